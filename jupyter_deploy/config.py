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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from jupyter_deploy.errors import ConfigError

__all__ = [
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

_QUANTITY_RE = re.compile(
    r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?"
)
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
    raise ValueError(f"bad quantity {_short(value)} ({_QUANTITY_HELP})")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelInfo:
    """The ``model`` section: who the model is."""

    id: str
    user_id: str = "local"
    app_id: str = "default"
    model_type_id: str = "any-to-any"
    visibility: str = "private"  # "public": other users may see, call and deploy it


@dataclass(frozen=True)
class ComputeInfo:
    """The ``inference_compute_info`` section, quantities already parsed.

    CPU values are in cores, memory values in bytes; ``None`` means not given.
    """

    cpu_limit: float | None = None
    cpu_requests: float | None = None
    cpu_memory: float | None = None
    cpu_memory_requests: float | None = None
    num_accelerators: int = 0
    accelerator_type: tuple[str, ...] = ()
    accelerator_memory: float | None = None


@dataclass(frozen=True)
class Checkpoints:
    """The ``checkpoints`` section: where the weights come from.

    ``huggingface`` uses ``repo_id`` (and optionally ``revision``, ``hf_token``,
    ``when``); ``local`` uses ``path``, relative to the model folder unless
    absolute. ``jupyter_deploy.checkpoints.resolve_checkpoint`` turns it into a
    folder on disk.
    """

    type: Literal["huggingface", "local"]
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    # Kept out of repr so that a notebook displaying the config does not show it.
    hf_token: str | None = field(default=None, repr=False)
    when: str = "runtime"


@dataclass(frozen=True)
class ConceptInfo:
    """One item of the ``concepts`` list."""

    id: str
    name: str


@dataclass(frozen=True)
class ModelConfig:
    """A checked ``config.yaml``.

    ``notes`` holds one line per section that was accepted but ignored.
    """

    model: ModelInfo
    inference_compute_info: ComputeInfo = ComputeInfo()
    checkpoints: Checkpoints | None = None
    concepts: tuple[ConceptInfo, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data that ``validate_config`` accepts back.

        Quantities are written as numbers (cores and bytes); fields that were
        not given are left out. ``notes`` are not part of the file.
        """
        data: dict[str, Any] = {"model": dict(vars(self.model))}
        compute = {
            name: _plain_number(value) if isinstance(value, float) else value
            for name, value in vars(self.inference_compute_info).items()
            if value is not None and value != ()
        }
        if "accelerator_type" in compute:
            compute["accelerator_type"] = list(compute["accelerator_type"])
        data["inference_compute_info"] = compute
        if self.checkpoints is not None:
            data["checkpoints"] = {
                name: value for name, value in vars(self.checkpoints).items() if value is not None
            }
        if self.concepts:
            data["concepts"] = [{"id": c.id, "name": c.name} for c in self.concepts]
        return data


def _plain_number(value: float) -> int | float:
    # 13958643712 reads better in a dumped file than 13958643712.0
    return int(value) if value.is_integer() else value


# --------------------------------------------------------------------------- checking

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ID_MAX = 128
_ID_HELP = "use letters, digits, '-', '_' and '.'; start with a letter or digit"
# A Hugging Face repo id is "name" or "org/name".
_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")

_SECTIONS = ("model", "inference_compute_info", "checkpoints", "concepts")
# Clarifai sections that mean nothing here: accepted so that a Clarifai model
# folder loads unchanged, and noted so that nobody expects them to take effect.
_IGNORED_SECTIONS = {
    "build_info": "ignored (jupyter_deploy builds no images; "
    "the runner uses the model's requirements.txt)",
}
_MODEL_FIELDS = ("id", "user_id", "app_id", "model_type_id")
VISIBILITIES = ("private", "public")
_QUANTITY_FIELDS = (
    "cpu_limit",
    "cpu_requests",
    "cpu_memory",
    "cpu_memory_requests",
    "accelerator_memory",
)
_COMPUTE_FIELDS = (*_QUANTITY_FIELDS, "num_accelerators", "accelerator_type")
_HF_ONLY = ("repo_id", "revision", "hf_token")
_CHECKPOINT_FIELDS = ("type", *_HF_ONLY, "path", "when")
_WHEN = ("runtime", "upload", "build")


class _Report:
    """Collects one line per problem, so a file is fixed in one pass, not N."""

    def __init__(self, filename: str):
        self.filename = filename
        self.lines: list[str] = []

    def add(self, path: str, problem: str) -> None:
        where = f"{self.filename}: {path}" if path else self.filename
        self.lines.append(f"{where}: {problem}")

    def mapping(self, value: Any, path: str) -> dict | None:
        """``value`` if it is a mapping, else ``None`` (and a line saying so)."""
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {_describe(value)}")
            return None
        return value

    def unknown_fields(self, section: dict, path: str, known: tuple[str, ...]) -> None:
        # Called after a section's known fields are checked, so that a misspelt key
        # does not push the problems with the real fields down the list.
        for key in section:
            if key not in known:
                self.add(f"{path}.{key}", f"unknown field (known: {', '.join(known)})")

    def string(
        self, section: dict, key: str, path: str, *, required: str = "", is_id: bool = False
    ) -> str | None:
        """``section[key]`` if it is a valid string; ``required`` says what a missing one is."""
        value = section.get(key)
        where = f"{path}.{key}"
        # `key:` with nothing after it is YAML null: the same as leaving it out
        if value is None:
            if required:
                self.add(where, f"required ({required})")
            return None
        if not isinstance(value, str):
            self.add(where, f"expected a string, got {_describe(value)}")
            return None
        if is_id:
            if not _ID_RE.fullmatch(value):
                self.add(where, f"bad id {_short(value)} ({_ID_HELP})")
                return None
            if len(value) > _ID_MAX:
                self.add(
                    where,
                    f"bad id {_short(value)} (at most {_ID_MAX} characters, got {len(value)})",
                )
                return None
        elif not value.strip():
            self.add(where, "must not be empty")
            return None
        return value


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
    report = _Report(filename)
    if data is None:
        raise ConfigError(f"{filename}: empty file (it needs at least `model: {{id: my-model}}`)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{filename}: expected a mapping of sections ({', '.join(_SECTIONS)}) "
            f"at the top level, got {_describe(data)}"
        )

    notes = []
    for key in data:
        if key in _IGNORED_SECTIONS:
            notes.append(f"{filename}: {key}: {_IGNORED_SECTIONS[key]}")
        elif key not in _SECTIONS:
            known = ", ".join((*_SECTIONS, *_IGNORED_SECTIONS))
            report.add(str(key), f"unknown section (known: {known})")

    model = _check_model(report, data.get("model"))
    compute = _check_compute(report, data.get("inference_compute_info"))
    checkpoints = _check_checkpoints(report, data.get("checkpoints"))
    concepts = _check_concepts(report, data.get("concepts"))

    if report.lines:
        raise ConfigError(report.lines)
    assert model is not None  # a missing or broken model section was reported above
    return ModelConfig(
        model=model,
        inference_compute_info=compute,
        checkpoints=checkpoints,
        concepts=concepts,
        notes=tuple(notes),
    )


def _check_model(report: _Report, value: Any) -> ModelInfo | None:
    if value is None:
        report.add("model", "required section (at least `model: {id: my-model}`)")
        return None
    section = report.mapping(value, "model")
    if section is None:
        return None
    model_id = report.string(
        section, "id", "model", required="the model's id, e.g. 'my-model'", is_id=True
    )
    # Optional fields fall back to the dataclass defaults when absent.
    given = {
        key: checked
        for key in _MODEL_FIELDS[1:]
        if key in section
        and (checked := report.string(section, key, "model", is_id=True)) is not None
    }
    if "visibility" in section:
        visibility = section["visibility"]
        if visibility in VISIBILITIES:
            given["visibility"] = visibility
        else:
            report.add("model.visibility", f"must be one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    report.unknown_fields(section, "model", (*_MODEL_FIELDS, "visibility"))
    return ModelInfo(id=model_id, **given) if model_id is not None else None


def _check_compute(report: _Report, value: Any) -> ComputeInfo:
    path = "inference_compute_info"
    if value is None:
        return ComputeInfo()
    section = report.mapping(value, path)
    if section is None:
        return ComputeInfo()

    quantities: dict[str, float] = {}
    for key in _QUANTITY_FIELDS:
        if section.get(key) is not None:
            try:
                quantities[key] = parse_quantity(section[key])
            except ValueError as exc:
                report.add(f"{path}.{key}", str(exc))
    # Kubernetes refuses a request above its limit; say so before a scheduler does.
    for request, limit in (("cpu_requests", "cpu_limit"), ("cpu_memory_requests", "cpu_memory")):
        if (
            request in quantities
            and limit in quantities
            and quantities[request] > quantities[limit]
        ):
            report.add(
                f"{path}.{request}",
                f"{section[request]} is more than {limit} {section[limit]}",
            )

    num = section.get("num_accelerators")
    if num is None:
        num = 0
    elif isinstance(num, bool) or not isinstance(num, int) or num < 0:
        report.add(
            f"{path}.num_accelerators", f"expected a whole number >= 0, got {_describe(num)}"
        )
        num = 0

    types = section.get("accelerator_type")
    if types is None:
        types = []
    elif isinstance(types, str):  # `accelerator_type: NVIDIA-A10G` means a list of one
        types = [types]
    elif not isinstance(types, list):
        report.add(
            f"{path}.accelerator_type", f"expected a list of strings, got {_describe(types)}"
        )
        types = []
    for i, item in enumerate(types):
        if not isinstance(item, str) or not item.strip():
            report.add(
                f"{path}.accelerator_type[{i}]",
                f"expected a non-empty string, got {_describe(item)}",
            )
    report.unknown_fields(section, path, _COMPUTE_FIELDS)

    return ComputeInfo(
        **quantities,
        num_accelerators=num,
        accelerator_type=tuple(t for t in types if isinstance(t, str)),
    )


def _check_checkpoints(report: _Report, value: Any) -> Checkpoints | None:
    path = "checkpoints"
    if value is None:
        return None
    section = report.mapping(value, path)
    if section is None:
        return None
    kind = report.string(section, "type", path, required="huggingface or local")
    # `when` (fetch the weights at runtime, upload or build) applies to both types.
    when = report.string(section, "when", path) or "runtime"
    if when not in _WHEN:
        report.add(f"{path}.when", f"bad value {_short(when)} (use {', '.join(_WHEN)})")

    ckpt = None
    if kind == "huggingface":
        repo_id = report.string(section, "repo_id", path, required="e.g. 'org/name'")
        if repo_id is not None and not _REPO_ID_RE.fullmatch(repo_id):
            report.add(
                f"{path}.repo_id", f"bad repo_id {_short(repo_id)} (use 'name' or 'org/name')"
            )
        revision = report.string(section, "revision", path)
        hf_token = report.string(section, "hf_token", path)
        if "path" in section:
            report.add(f"{path}.path", "only used with type local")
        ckpt = Checkpoints(
            type="huggingface", repo_id=repo_id, revision=revision, hf_token=hf_token, when=when
        )
    elif kind == "local":
        local_path = report.string(
            section, "path", path, required="a folder, relative to the model folder or absolute"
        )
        for key in _HF_ONLY:
            if key in section:
                report.add(f"{path}.{key}", "only used with type huggingface")
        ckpt = Checkpoints(type="local", path=local_path, when=when)
    elif kind is not None:
        report.add(f"{path}.type", f"unknown type {_short(kind)} (use huggingface or local)")
    report.unknown_fields(section, path, _CHECKPOINT_FIELDS)
    return ckpt


def _check_concepts(report: _Report, value: Any) -> tuple[ConceptInfo, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        report.add("concepts", f"expected a list of {{id, name}} items, got {_describe(value)}")
        return ()
    concepts = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(value):
        path = f"concepts[{i}]"
        section = report.mapping(item, path)
        if section is None:
            continue
        concept_id = report.string(section, "id", path, required="e.g. 'cat'", is_id=True)
        name = report.string(section, "name", path, required="the concept's display name")
        report.unknown_fields(section, path, ("id", "name"))
        if concept_id is not None and concept_id in first_seen:
            report.add(
                f"{path}.id",
                f"duplicate id {_short(concept_id)} (also concepts[{first_seen[concept_id]}])",
            )
        elif concept_id is not None:
            first_seen[concept_id] = i
        if concept_id is not None and name is not None:
            concepts.append(ConceptInfo(id=concept_id, name=name))
    return tuple(concepts)


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}


def _describe(value: Any) -> str:
    """``int 3``, ``str 'x'``, ``null``: what a wrong value was, for an error line."""
    if value is None:
        return "null"
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"{filename}: line {mark.line + 1}, column {mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return validate_config(data, filename)


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
            "model_type_id": ModelInfo.model_type_id,
        }
    }
    validate_config(data)
    return data


def dump_config(data: dict) -> str:
    """``data`` as YAML text, sections in the order given."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
