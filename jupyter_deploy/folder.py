"""Model folders: the one form in which a model enters the system.

A folder holds ``config.yaml``, ``requirements.txt`` and ``1/model.py`` (the
Clarifai layout). A notebook cell, a CLI upload and a Python upload all go
through a folder, so they behave the same.

Example::

    path = write_model_folder(cell_source, "models/echo", model_id="echo")
    cls = load_model_class(path)          # imports 1/model.py; load_model is not called
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from .config import default_config, dump_config
from .errors import ModelDefinitionError
from .model import ModelClass

MODEL_FILE = Path("1") / "model.py"
#: Optional pre- and post-processing beside the model (see ``jupyter_deploy.Transformer``).
TRANSFORMER_FILE = Path("1") / "transformer.py"


def model_class_names(source: str, filename: str = "model.py") -> list[str]:
    """Names of the classes in ``source`` that subclass ModelClass (read, not run)."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise ModelDefinitionError(_syntax_message(e)) from None
    names = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
            if "ModelClass" in bases:
                names.append(node.name)
    return names


def write_model_folder(source: str, dest: str | os.PathLike, *, model_id: str | None = None,
                       config: dict | None = None, requirements: str | list[str] | None = None) -> Path:
    """Write a cell's source (holding one ModelClass subclass) as a model folder.

    ``config`` replaces the generated config.yaml content; otherwise one is made
    for ``model_id`` (default: the class name in lower case). An existing
    config.yaml or requirements.txt is kept unless new content is given.
    """
    names = model_class_names(source)
    if len(names) != 1:
        found = f"found {len(names)}" + (f": {', '.join(names)}" if names else "")
        raise ModelDefinitionError(
            f"the source must define exactly one ModelClass subclass ({found}); "
            "put helpers in plain classes or functions")
    root = Path(dest)
    _write(root / MODEL_FILE, source)
    if config is not None or not (root / "config.yaml").exists():
        data = config if config is not None else default_config(model_id or names[0].lower())
        _write(root / "config.yaml", dump_config(data))
    if requirements is not None or not (root / "requirements.txt").exists():
        reqs = requirements or ""
        text = "\n".join(reqs) if isinstance(reqs, list) else reqs
        _write(root / "requirements.txt", text.strip() + "\n" if text.strip() else "")
    return root


def _write(path: Path, text: str) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def model_file(model_dir: str | os.PathLike) -> Path:
    """The ``1/model.py`` of a folder (or the file itself when given one)."""
    path = Path(model_dir)
    if path.is_file():
        return path
    file = path / MODEL_FILE
    if not file.is_file():
        raise ModelDefinitionError(f"{path}: no {MODEL_FILE} (a model folder holds config.yaml, "
                                   "requirements.txt and 1/model.py; `jupyter-deploy init` makes one)")
    return file


def load_model_class(model_dir: str | os.PathLike) -> type[ModelClass]:
    """Import a folder's ``1/model.py`` and return its one ModelClass subclass.

    Errors name the model's file and line: a syntax error, a missing package
    (with the hint to add it to requirements.txt), or any exception raised at
    import time.
    """
    file = model_file(model_dir).resolve()
    source = file.read_text()
    model_class_names(source, str(file))  # a syntax error reads better from ast than from import
    module, name = _import_file(file, source, "jupyter_deploy_model_")
    classes = [obj for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, ModelClass) and obj is not ModelClass
               and obj.__module__ == name]
    if len(classes) != 1:
        raise ModelDefinitionError(
            f"{file}: must define exactly one ModelClass subclass, found {len(classes)}"
            + (f" ({', '.join(c.__name__ for c in classes)})" if classes else ""))
    return classes[0]


def load_transformer_class(model_dir: str | os.PathLike) -> type | None:
    """Import a folder's ``1/transformer.py`` (None when it has none) and return its transformer class.

    That is its one ``Transformer`` subclass, else its one class with both
    ``preprocess`` and ``postprocess``. Errors name the file and line, as for model.py.

    Example::

        cls = load_transformer_class("models/echo")   # None, or e.g. <class 'Normalize'>
    """
    from .model import Transformer

    file = (Path(model_dir) / TRANSFORMER_FILE).resolve()
    if not file.is_file():
        return None
    source = file.read_text()
    try:
        ast.parse(source, str(file))
    except SyntaxError as e:
        raise ModelDefinitionError(_syntax_message(e)) from None
    module, name = _import_file(file, source, "jupyter_deploy_transformer_")
    own = [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == name]
    classes = [c for c in own if issubclass(c, Transformer)] or [
        c for c in own if callable(getattr(c, "preprocess", None)) and callable(getattr(c, "postprocess", None))]
    if len(classes) != 1:
        found = f"found {len(classes)}" + (f" ({', '.join(c.__name__ for c in classes)})" if classes else "")
        raise ModelDefinitionError(
            f"{file}: must define exactly one transformer class (a jupyter_deploy.Transformer subclass, or "
            f"a class with preprocess() and postprocess()), {found}")
    cls = classes[0]
    for hook in ("preprocess", "postprocess"):
        if not callable(getattr(cls, hook, None)):
            raise ModelDefinitionError(f"{file}: transformer {cls.__name__} has no {hook}() method")
    return cls


def _import_file(file: Path, source: str, prefix: str) -> tuple[Any, str]:
    """Import ``file`` as a module of its own (once per content); returns it and its name."""
    # A unique module name per file content: two versions of one model can live in one process.
    name = prefix + hashlib.sha256(f"{file}\0{source}".encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # Sibling modules of model.py (1/utils.py, ...) must be importable from it.
        sys.path.insert(0, str(file.parent))
        try:
            spec.loader.exec_module(module)
        except BaseException as e:
            del sys.modules[name]
            raise ModelDefinitionError(_import_message(e, file)) from None
        finally:
            sys.path.remove(str(file.parent))
    return module, name


def _syntax_message(e: SyntaxError) -> str:
    where = f"{e.filename}, line {e.lineno}" if e.lineno else str(e.filename)
    text = f"\n    {e.text.rstrip()}" if e.text else ""
    return f"syntax error in {where}: {e.msg}{text}"


def _import_message(e: BaseException, file: Path) -> str:
    if isinstance(e, ModelDefinitionError):
        return str(e)  # already names its own file (a model.py that loads another one)
    if isinstance(e, SyntaxError):
        return _syntax_message(e)
    line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                 if Path(f.filename) == file), None)
    where = f"{file}, line {line}" if line else str(file)
    if isinstance(e, ModuleNotFoundError):
        return (f"{where}: no module named '{e.name}' (install it, or add it to the model's "
                "requirements.txt)")
    return f"{where}: {type(e).__name__}: {e}"


def model_folder_for(path_or_source: Any, scratch: str | os.PathLike) -> Path:
    """A folder for ``path_or_source``: an existing folder or model.py, or source text written to scratch."""
    if isinstance(path_or_source, os.PathLike) or (
            isinstance(path_or_source, str) and "\n" not in path_or_source
            and Path(path_or_source).exists()):
        path = Path(path_or_source)
        return path.parent.parent if path.is_file() and path.parent.name == "1" else path
    if isinstance(path_or_source, str) and "ModelClass" in path_or_source:
        return write_model_folder(path_or_source, scratch)
    raise ModelDefinitionError(
        f"{str(path_or_source)[:80]!r} is neither a model folder, a model.py, nor source code "
        "defining a ModelClass subclass")
