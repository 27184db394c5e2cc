"""Importing another platform's Python script (a Hopsworks predictor, an ADS score.py) on a replica,
with its errors naming the script's own file and line."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelDefinitionError


def check_syntax(file: Path) -> None:
    """ModelDefinitionError naming the file and line of a syntax error (read, not run)."""
    from ..folder import _syntax_message

    try:
        ast.parse(file.read_text(), str(file))
    except SyntaxError as e:
        raise ModelDefinitionError(_syntax_message(e)) from None


def load(file: Path, prefix: str) -> Any:
    """Import ``file`` as a module of its own (its folder importable from it)."""
    from ..folder import _import_file

    return _import_file(file, file.read_text(), prefix)[0]


def run(file: Path, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, an exception it raises reported as ``file, line N: what: Type: message``."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the script's own error, whatever it is
        from ..folder import _import_message

        message = _import_message(e, file)
        raise ModelDefinitionError(message.replace(": ", f": {what}: ", 1)) from None


def set_env(**values: Path) -> None:
    for name, value in values.items():
        os.environ[name] = str(value)
