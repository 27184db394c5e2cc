"""``ModelConfig``: the ``config.yaml`` of a model folder (see ``jupyter_deploy.config``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, WithJsonSchema

from ..config import QUANTITY_PATTERN, parse_quantity
from ._base import ConfigModel, describe, ident, one_of, problem, short, text

__all__ = ["Checkpoints", "ComputeInfo", "ConceptInfo", "ModelConfig", "ModelInfo"]


def _quantity(value: Any) -> float:
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


#: A CPU count or memory size in Kubernetes notation ('500m', '13Gi'), kept as a number
#: (cores, bytes); the schema says what may be written.
Quantity = Annotated[
    float,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {
                    "type": "string",
                    "pattern": "^" + re.sub(r"\?P<\w+>", "", QUANTITY_PATTERN) + "$",
                },
            ]
        }
    ),
]

VISIBILITIES = ("private", "public")


class ModelInfo(ConfigModel):
    """The ``model`` section: who the model is.

    >>> ModelInfo(id="sentiment").app_id
    'default'
    """

    _missing: ClassVar[dict[str, str]] = {"id": "required (the model's id, e.g. 'my-model')"}

    id: Annotated[str, ident("model")]
    user_id: Annotated[str, ident("user")] = "local"
    app_id: Annotated[str, ident("app")] = "default"
    model_type_id: Annotated[str, ident("model_type")] = "any-to-any"
    # "public": other users may see, call and deploy it
    visibility: Annotated[
        Literal["private", "public"],
        one_of(VISIBILITIES, lambda v: f"must be one of {', '.join(VISIBILITIES)}, got {v!r}"),
    ] = "private"


def _as_list(value: Any) -> Any:
    if isinstance(value, str):  # `accelerator_type: NVIDIA-A10G` means a list of one
        return [value]
    if not isinstance(value, (list, tuple)):
        raise problem(f"expected a list of strings, got {describe(value)}")
    return value


def _non_empty(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"expected a non-empty string, got {describe(value)}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise problem(f"expected a whole number >= 0, got {describe(value)}")
    return value


class ComputeInfo(ConfigModel):
    """The ``inference_compute_info`` section, quantities parsed.

    CPU values are in cores, memory values in bytes; ``None`` means not given.

    >>> ComputeInfo(cpu_limit="500m", cpu_memory="13Gi").cpu_memory
    13958643712.0
    """

    cpu_limit: Quantity | None = None
    cpu_requests: Quantity | None = None
    cpu_memory: Quantity | None = None
    cpu_memory_requests: Quantity | None = None
    num_accelerators: Annotated[int, BeforeValidator(_count)] = 0
    accelerator_type: Annotated[
        tuple[Annotated[str, BeforeValidator(_non_empty)], ...],
        BeforeValidator(_as_list),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ]
            }
        ),
    ] = ()
    accelerator_memory: Quantity | None = None

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        # Kubernetes refuses a request above its limit; say so before a scheduler does.
        out = []
        for request, limit in (
            ("cpu_requests", "cpu_limit"),
            ("cpu_memory_requests", "cpu_memory"),
        ):
            try:
                above = parse_quantity(data[request]) > parse_quantity(data[limit])
            except (KeyError, ValueError):
                continue  # not given, or already reported as a bad quantity
            if above:
                out.append(((request,), f"{data[request]} is more than {limit} {data[limit]}"))
        return out


# A Hugging Face repo id is "name" or "org/name".
_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_HF_ONLY = ("repo_id", "revision", "hf_token")
_WHEN = ("runtime", "upload", "build")


class Checkpoints(ConfigModel):
    """The ``checkpoints`` section: where the weights come from.

    ``huggingface`` uses ``repo_id`` (and optionally ``revision``, ``hf_token``,
    ``when``); ``local`` uses ``path``, relative to the model folder unless
    absolute. ``jupyter_deploy.checkpoints.resolve_checkpoint`` turns it into a
    folder on disk.

    >>> Checkpoints(type="local", path="weights").when
    'runtime'
    """

    _missing: ClassVar[dict[str, str]] = {"type": "required (huggingface or local)"}

    type: Annotated[
        Literal["huggingface", "local"],
        one_of(
            ("huggingface", "local"),
            lambda v: f"unknown type {short(v)} (use huggingface or local)",
        ),
    ]
    repo_id: Annotated[str | None, text(non_empty=True)] = None
    revision: Annotated[str | None, text(non_empty=True)] = None
    path: Annotated[str | None, text(non_empty=True)] = None
    # Kept out of repr so that a notebook displaying the config does not show it.
    hf_token: Annotated[str | None, text(non_empty=True)] = Field(default=None, repr=False)
    # Fetch the weights at runtime, upload or build; applies to both types.
    when: Annotated[
        Literal["runtime", "upload", "build"],
        one_of(_WHEN, lambda v: f"bad value {short(v)} (use {', '.join(_WHEN)})"),
    ] = "runtime"

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        out: list[tuple[tuple, str]] = []
        if data.get("type") == "huggingface":
            repo_id = data.get("repo_id")
            if repo_id is None:
                out.append((("repo_id",), "required (e.g. 'org/name')"))
            elif (
                isinstance(repo_id, str) and repo_id.strip() and not _REPO_ID_RE.fullmatch(repo_id)
            ):
                out.append(
                    (("repo_id",), f"bad repo_id {short(repo_id)} (use 'name' or 'org/name')")
                )
            if "path" in data:
                out.append((("path",), "only used with type local"))
        elif data.get("type") == "local":
            if data.get("path") is None:
                out.append(
                    (("path",), "required (a folder, relative to the model folder or absolute)")
                )
            out += [((key,), "only used with type huggingface") for key in _HF_ONLY if key in data]
        return out


class ConceptInfo(ConfigModel):
    """One item of the ``concepts`` list: ``ConceptInfo("pos", "positive")``."""

    _missing: ClassVar[dict[str, str]] = {
        "id": "required (e.g. 'cat')",
        "name": "required (the concept's display name)",
    }

    id: Annotated[str, ident("concept")]
    name: Annotated[str, text(non_empty=True)]

    def __init__(self, *args: Any, **data: Any):
        # Positional, like the dataclass it replaced: ConceptInfo("pos", "positive").
        super().__init__(**dict(zip(("id", "name"), args)), **data)


def _concept_list(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise problem(f"expected a list of {{id, name}} items, got {describe(value)}")
    return value


#: Clarifai sections that mean nothing here: accepted so that a Clarifai model folder
#: loads unchanged, and noted so that nobody expects them to take effect.
IGNORED_SECTIONS = {
    "build_info": "ignored (jupyter_deploy builds no images; "
    "the runner uses the model's requirements.txt)",
}


class ModelConfig(ConfigModel):
    """A checked ``config.yaml``; ``jupyter_deploy.config.load_config`` reads one.

    ``notes`` holds one line per section that was accepted but ignored.

    >>> cfg = ModelConfig.model_validate({"model": {"id": "sentiment"},
    ...                                   "inference_compute_info": {"cpu_memory": "13Gi"}})
    >>> cfg.model.user_id, cfg.inference_compute_info.cpu_memory
    ('local', 13958643712.0)
    """

    _missing: ClassVar[dict[str, str]] = {
        "model": "required section (at least `model: {id: my-model}`)"
    }
    _unknown: ClassVar[str] = "unknown section"
    _also_known: ClassVar[tuple[str, ...]] = tuple(IGNORED_SECTIONS)

    model: ModelInfo
    inference_compute_info: ComputeInfo = ComputeInfo()
    checkpoints: Checkpoints | None = None
    concepts: Annotated[tuple[ConceptInfo, ...], BeforeValidator(_concept_list)] = ()
    _notes: tuple[str, ...] = PrivateAttr(default=())

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        # The ignored sections are noted by jupyter_deploy.config, not validated.
        return {k: v for k, v in data.items() if k not in IGNORED_SECTIONS}

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        out: list[tuple[tuple, str]] = []
        concepts = data.get("concepts")
        first_seen: dict[str, int] = {}
        for i, item in enumerate(concepts if isinstance(concepts, list) else []):
            concept_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(concept_id, str):
                continue
            if concept_id in first_seen:
                also = f"also concepts[{first_seen[concept_id]}]"
                out.append((("concepts", i, "id"), f"duplicate id {short(concept_id)} ({also})"))
            else:
                first_seen[concept_id] = i
        return out

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data that ``validate_config`` accepts back.

        Quantities are written as numbers (cores and bytes); fields that were
        not given are left out. ``notes`` are not part of the file.
        """
        data = self.model_dump(exclude_none=True)
        data["model"] = self.model.model_dump()
        compute = {
            name: _plain_number(value) if isinstance(value, float) else value
            for name, value in data["inference_compute_info"].items()
            if value != ()
        }
        if "accelerator_type" in compute:
            compute["accelerator_type"] = list(compute["accelerator_type"])
        data["inference_compute_info"] = compute
        if self.concepts:
            data["concepts"] = [c.model_dump() for c in self.concepts]
        else:
            data.pop("concepts", None)
        return data


def _plain_number(value: float) -> int | float:
    # 13958643712 reads better in a dumped file than 13958643712.0
    return int(value) if value.is_integer() else value
