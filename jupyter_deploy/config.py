"""The ``config.yaml`` of a model folder.

A model folder is ``config.yaml``, ``requirements.txt`` and ``1/model.py``, the
layout of a Clarifai model upload. ``config.yaml`` names the model and says what
it needs to run::

    model:
      id: sentiment
      user_id: local
      app_id: default
      model_type_id: text-to-text
    inference_compute_info:
      cpu_limit: "2"
      cpu_memory: 13Gi
      num_accelerators: 1
      accelerator_type: ["NVIDIA-*"]
      accelerator_memory: 15Gi
    checkpoints:
      type: huggingface
      repo_id: distilbert/distilbert-base-uncased-finetuned-sst-2-english
    concepts:
      - {id: pos, name: positive}

``load_config`` reads and checks one; every problem in the file is reported at
once, one line each, as a ``ConfigError``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from jupyter_deploy.errors import ConfigError

if TYPE_CHECKING:
    from .configs.model import Checkpoints, ComputeInfo, ConceptInfo, ModelConfig, ModelInfo

__all__ = [
    "QUANTITY_PATTERN",
    "Checkpoints",
    "ComputeInfo",
    "ConceptInfo",
    "ModelConfig",
    "ModelInfo",
    "default_config",
    "dump_config",
    "load_config",
    "parse_config",
    "parse_quantity",
    "validate_config",
]

# --------------------------------------------------------------------------- quantities

#: A Kubernetes quantity: a number >= 0 and an optional suffix (also the JSON Schema pattern).
QUANTITY_PATTERN = (
    r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY_HELP = (
    "use a number >= 0 with an optional suffix m, k, M, G, T, Ki, Mi, Gi or Ti, "
    "e.g. '2', '500m', '13Gi'"
)


def parse_quantity(value: Any) -> float:
    """Turn a Kubernetes quantity into a plain number.

    CPU counts and memory sizes in ``config.yaml`` use Kubernetes notation;
    memory comes back in bytes::

        >>> parse_quantity("500m"), parse_quantity("13Gi"), parse_quantity(2)
        (0.5, 13958643712.0, 2.0)

    Raises:
        ValueError: for negatives, unknown suffixes (``"12GB"``), booleans, ``""``
            and anything that is not a number or a string; the message says what
            a valid quantity looks like.
    """
    # bool is an int subclass, but `cpu_limit: yes` is a mistake, not 1 CPU
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return number
    elif isinstance(value, str):
        match = _QUANTITY_RE.fullmatch(value)
        if match:
            number = float(match["number"]) * _SUFFIXES[match["suffix"] or ""]
            if math.isfinite(number):
                return number
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ValueError(f"bad quantity {shown} ({_QUANTITY_HELP})")


# --------------------------------------------------------------------------- checking

#: The typed sections, defined in ``jupyter_deploy.configs.model``; imported on first use so
#: that ``import jupyter_deploy`` does not pay for pydantic.
_MODELS = ("Checkpoints", "ComputeInfo", "ConceptInfo", "ModelConfig", "ModelInfo")
_SECTIONS = ("model", "inference_compute_info", "checkpoints", "concepts")


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from .configs import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_config(data: Any, filename: str = "config.yaml") -> ModelConfig:
    """Check a parsed ``config.yaml`` and turn it into a ``ModelConfig``.

    Every problem is collected first, then raised together::

        >>> validate_config({"model": {"id": "my model"}, "concepts": [{"id": "a"}]})
        Traceback (most recent call last):
        ...
        ConfigError: config.yaml: model.id: bad id 'my model' (use letters, ...)
        config.yaml: concepts[0].name: required (the concept's display name)

    Args:
        data: the mapping ``yaml.safe_load`` returned.
        filename: the name each error line starts with.

    Raises:
        ConfigError: with one line per problem in ``.errors``.
    """
    from .configs._base import validate
    from .configs.model import IGNORED_SECTIONS, ModelConfig

    if data is None:
        raise ConfigError(f"{filename}: empty file (it needs at least `model: {{id: my-model}}`)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{filename}: expected a mapping of sections ({', '.join(_SECTIONS)}) "
            f"at the top level, got {_describe(data)}"
        )
    config, problems = validate(ModelConfig, data)
    if problems:
        raise ConfigError([f"{filename}: {path}: {problem}" if path else f"{filename}: {problem}"
                           for path, problem in problems])
    config._notes = tuple(f"{filename}: {key}: {IGNORED_SECTIONS[key]}"
                          for key in data if key in IGNORED_SECTIONS)
    return config


def _describe(value: Any) -> str:
    from .configs._base import describe

    return describe(value)


# --------------------------------------------------------------------------- files


def parse_config(text: str, filename: str = "config.yaml") -> ModelConfig:
    """Parse and check the text of a ``config.yaml``.

    A YAML syntax error is reported with its line and column::

        >>> parse_config("model:\\n  id: a\\n  user_id: [b\\n")
        Traceback (most recent call last):
        ...
        ConfigError: config.yaml: line 4, column 1: invalid YAML: ...

    Raises:
        ConfigError: for invalid YAML or any problem ``validate_config`` finds.
    """
    return validate_config(parse_yaml(text, filename), filename)


def parse_yaml(text: str, filename: str) -> Any:
    """The data of a YAML document; ConfigError naming the file (and the line and column) when it
    is not valid YAML or nests too deeply to read.

    >>> parse_yaml("a: [1, 2]", "x.yaml")
    {'a': [1, 2]}
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"{filename}: line {mark.line + 1}, column {mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{filename}: nested too deeply to read (hundreds of levels of lists or "
                          "mappings); a config is a few levels deep") from None


def load_config(model_dir_or_file: str | Path) -> ModelConfig:
    """Read and check the ``config.yaml`` of a model folder.

    Accepts the folder or the file itself; error lines start with the file's path::

        >>> cfg = load_config("models/sentiment")
        >>> cfg.model.id, cfg.inference_compute_info.cpu_memory
        ('sentiment', 13958643712.0)

    Raises:
        ConfigError: if the file is missing or unreadable, or is not a valid config.
    """
    path = Path(model_dir_or_file)
    if path.suffix not in (".yaml", ".yml"):
        path = path / "config.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found (a model folder holds config.yaml, requirements.txt and "
            "1/model.py; create config.yaml with at least `model: {id: my-model}`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    return parse_config(text, str(path))


def default_config(model_id: str, user_id: str = "local", app_id: str = "default") -> dict:
    """The smallest valid config for a new model folder, as plain data.

    >>> print(dump_config(default_config("sentiment")), end="")
    model:
      id: sentiment
      user_id: local
      app_id: default
      model_type_id: any-to-any

    Raises:
        ConfigError: if one of the ids is not valid, so a bad name fails before
            any file is written.
    """
    data = {
        "model": {
            "id": model_id,
            "user_id": user_id,
            "app_id": app_id,
            "model_type_id": "any-to-any",
        }
    }
    validate_config(data)
    return data


def dump_config(data: dict) -> str:
    """``data`` as YAML text, sections in the order given."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
