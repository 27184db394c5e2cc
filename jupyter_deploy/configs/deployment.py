"""``DeploymentConfig`` and its sections: the model a deployment serves and how."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from ..ids import rule_problem
from ._base import ConfigModel, describe, flag, ident, number, one_of, problem, text

__all__ = [
    "AutoscaleConfig",
    "BatcherConfig",
    "DeploymentConfig",
    "InferenceLoggerConfig",
    "ModelVersionRef",
    "ResourcesConfig",
    "SecretRef",
    "TransformerConfig",
    "WorkerConfig",
    "WorkerModel",
]

# Retention and inline-size defaults of the inference logger; the call log
# (control/_calllog.py) and the runner's telemetry use the same numbers.
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_AGE = 7 * 86400.0
DEFAULT_INLINE_BYTES = 64 << 10

#: What the inference logger records beside every call's access record.
LOGGER_MODES = ("none", "model_inputs", "predictions", "all")
#: Environment variable names a secret may be exposed as.
ENV_VAR_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
#: Environment variables the scheduler sets itself: a secret may not take their place.
RESERVED_ENV = {
    "MODEL_PATH",
    "MODEL_VERSION",
    "DEPLOYMENT_ID",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONUNBUFFERED",
}


class ModelVersionRef(ConfigModel):
    """``worker.model.model_version``: a pinned version id (``""``: follow the latest)."""

    id: Annotated[str, text()] = ""


class WorkerModel(ConfigModel):
    """``worker.model``: the model to serve; ``user_id`` defaults to the caller."""

    _missing: ClassVar[dict[str, str]] = {"id": "required: the id of the model to serve"}
    _sort_known: ClassVar[bool] = True

    id: Annotated[str, ident("model")]
    user_id: Annotated[str | None, ident("user")] = Field(
        default=None, description="default: the caller"
    )
    app_id: Annotated[str, ident("app")] = "default"
    model_version: ModelVersionRef = ModelVersionRef()

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        data = {k: v for k, v in data.items() if not (k == "id" and v == "")}
        if context.get("caller"):
            data.setdefault("user_id", context["caller"])
        return data


class WorkerConfig(ConfigModel):
    """``worker``: what the replicas run."""

    _sort_known: ClassVar[bool] = True

    model: WorkerModel

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        return {"model": {}, **data}  # a missing model reports worker.model.id: required


class AutoscaleConfig(ConfigModel):
    """``autoscale_config``: how many replicas, and when that changes.

    ``max_replicas`` defaults to ``min_replicas`` (at least 1); ``min_replicas: 0``
    lets the deployment scale to zero.

    >>> AutoscaleConfig.model_validate({"min_replicas": 0}).scale_to_zero_delay_seconds
    300.0
    """

    _sort_known: ClassVar[bool] = True

    min_replicas: Annotated[int, number(0, whole=True)] = Field(
        1,
        description="replicas kept running however idle; 0 lets the deployment scale to zero "
        "(state IDLE) and start a replica when a call comes",
    )
    max_replicas: Annotated[int, number(1, whole=True)] = Field(
        1, description="the most replicas the autoscaler starts (default: min_replicas, at least 1)"
    )
    target_in_flight_per_replica: Annotated[float, number(0.01)] = Field(
        2.0,
        description="calls in flight per replica the autoscaler aims for: more for "
        "scale_up_delay_seconds adds replicas",
    )
    scale_up_delay_seconds: Annotated[float, number(0)] = Field(
        10.0, description="how long the load must stay above the target before replicas are added"
    )
    scale_down_delay_seconds: Annotated[float, number(0)] = Field(
        120.0,
        description="how long the load must stay below what fewer replicas would carry "
        "before replicas are removed",
    )
    scale_to_zero_delay_seconds: Annotated[float, number(0)] = Field(
        300.0, description="with min_replicas 0: seconds without a call before every replica stops"
    )

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        low = data.get("min_replicas", 1)
        if "max_replicas" not in data and _whole(low):
            data = {**data, "max_replicas": max(low, 1)}
        return data

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        low, high = data.get("min_replicas", 1), data.get("max_replicas")
        if _whole(low) and _whole(high) and high < low:
            return [(("max_replicas",), f"{high} is below min_replicas {low}")]
        return []

    def scales(self) -> bool:
        """Whether the replica count can change with the load (or drop to zero)."""
        return self.min_replicas == 0 or self.max_replicas > self.min_replicas


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class BatcherConfig(ConfigModel):
    """``inference_batcher``: concurrent calls of a batchable method served as one batch.

    A section that is given but says nothing of ``enabled`` is enabled:
    ``inference_batcher: {max_batch_size: 8}`` means batching is wanted (``true`` works too).

    >>> BatcherConfig.model_validate({"max_batch_size": 8}).enabled
    True
    """

    _sort_known: ClassVar[bool] = True
    _mapping_hint: ClassVar[str] = " like {enabled: true, max_batch_size: 32}"

    enabled: Annotated[bool, flag()] = False
    # The upper bounds catch a unit mistake (seconds given as milliseconds and the like).
    max_batch_size: Annotated[int, number(1, 4096, whole=True)] = 32
    #: How long the oldest queued call waits for others to join its batch.
    max_latency_ms: Annotated[int | float, number(0, 10_000)] = 5.0
    #: How long a call may wait in the queue for its batch to start before it fails.
    timeout_ms: Annotated[int | float, number(1, 3_600_000)] = 10_000

    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        return {"enabled": True, **data}


class InferenceLoggerConfig(ConfigModel):
    """``inference_logger``: what is recorded beside each call's access record, and for how long.

    ``inference_logger: all`` is short for ``{mode: all}``. The retention limits apply to
    all of the deployment's records, access records included.
    """

    _sort_known: ClassVar[bool] = True

    mode: Annotated[
        Literal["none", "model_inputs", "predictions", "all"],
        one_of(LOGGER_MODES, lambda v: f"unknown mode {v!r} (use {', '.join(LOGGER_MODES)})"),
    ] = "none"
    max_records: Annotated[int, number(1, whole=True)] = DEFAULT_MAX_RECORDS
    max_age_seconds: Annotated[float, number(1, what="a number of seconds")] = DEFAULT_MAX_AGE
    max_inline_bytes: Annotated[int, number(0, whole=True)] = DEFAULT_INLINE_BYTES

    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data


class TransformerConfig(ConfigModel):
    """``transformer``: whether ``1/transformer.py`` runs (``transformer: false`` for short)."""

    enabled: Annotated[bool, flag()] = True

    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data


def _env_var(value: Any) -> Any:
    if not isinstance(value, str):
        raise problem(f"expected a string, got {describe(value)}")
    if not ENV_VAR_RE.match(value):
        raise problem(
            f"bad environment variable name {value!r} (use A-Z, 0-9 and '_', "
            "not starting with a digit, e.g. API_KEY)"
        )
    if value in RESERVED_ENV or value.startswith("JUPYTER_DEPLOY_"):
        raise problem(f"{value} is set by jupyter_deploy itself; choose another name")
    return value


class SecretRef(ConfigModel):
    """One item of ``secrets``: a secret's name and the variable the runner sees it as.

    Names only, never a value: ``SecretRef(id="api_key", env_var="API_KEY")``.
    """

    _missing: ClassVar[dict[str, str]] = {
        "id": "required: the name of a secret (client.set_secret(name, value))",
        "env_var": "required: the environment variable the runner sees it as, e.g. API_KEY",
    }
    _sort_known: ClassVar[bool] = True

    id: Annotated[str, ident("secret", what="secret name")]
    env_var: Annotated[str, BeforeValidator(_env_var)]

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        return {k: v for k, v in data.items() if v != ""}  # "" is as good as missing


def _secret_list(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise problem(f"expected a list of {{id: NAME, env_var: VAR}}, got {describe(value)}")
    return value


class ResourcesConfig(ConfigModel):
    """``resources``: what each replica gets (the GPUs; otherwise what the model's config asks)."""

    num_accelerators: Annotated[int | None, number(0, whole=True)] = None


def _or(short: dict) -> Any:
    """A field's JSON Schema that also allows the section's short form (``transformer: false``)."""

    def extra(schema: dict) -> None:
        options = schema.pop("anyOf", None) or [{"$ref": schema.pop("$ref")}]
        schema["anyOf"] = [short, *options]

    return extra


class DeploymentConfig(ConfigModel):
    """A deployment: the model it serves, its scaling, and the settings its replicas start with.

    The daemon validates with ``context={"caller": user_id}`` and stores ``to_dict()``;
    replicas and the autoscaler read that back without checking it again.

    >>> cfg = DeploymentConfig.model_validate(
    ...     {"worker": {"model": {"id": "echo"}}, "autoscale_config": {"min_replicas": 2}},
    ...     context={"caller": "local"})
    >>> cfg.autoscale_config.max_replicas, cfg.worker.model.user_id
    (2, 'local')
    """

    _sort_known: ClassVar[bool] = True

    worker: WorkerConfig
    autoscale_config: AutoscaleConfig = AutoscaleConfig()
    default: Annotated[bool, flag()] = Field(False, description="the model's default deployment")
    description: Annotated[str, text()] = ""
    drain_seconds: Annotated[int, number(0, whole=True)] = 5
    # The first replica of each version runs the model's test() before it serves.
    run_test: Annotated[bool, flag()] = True
    resources: ResourcesConfig | None = None
    secrets: Annotated[list[SecretRef] | None, BeforeValidator(_secret_list)] = None
    inference_logger: InferenceLoggerConfig = Field(
        InferenceLoggerConfig(), json_schema_extra=_or({"enum": list(LOGGER_MODES)})
    )
    transformer: TransformerConfig | None = Field(None, json_schema_extra=_or({"type": "boolean"}))
    inference_batcher: BatcherConfig | None = Field(
        None, json_schema_extra=_or({"type": "boolean"})
    )
    python: Annotated[str | None, text()] = Field(
        None, description="the interpreter replicas run with (default: the uploader's)"
    )
    # Accepted for Clarifai files (the nodepool and id travel in the request), not stored.
    nodepools: Any = Field(default=None, exclude=True)
    id: Any = Field(default=None, exclude=True)

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        data = {"worker": {}, **data}
        for key in ("python", "secrets"):  # "" and [] mean not given
            if key in data and not data[key]:
                del data[key]
        return data

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        secrets = data.get("secrets")
        out: list[tuple[tuple, str]] = []
        seen_ids: set[str] = set()
        seen_vars: set[str] = set()
        for i, item in enumerate(secrets if isinstance(secrets, list) else []):
            if not isinstance(item, dict):
                continue
            name, var = item.get("id"), item.get("env_var")
            # Only a valid name or variable counts twice; a bad one is reported as bad.
            if isinstance(name, str) and not rule_problem("secret", name) and name in seen_ids:
                out.append((("secrets", i, "id"), f"secret {name} is listed twice"))
            if isinstance(var, str) and ENV_VAR_RE.match(var) and var in seen_vars:
                out.append(
                    (("secrets", i, "env_var"), f"environment variable {var} is given twice")
                )
            # Only strings are remembered: a list or mapping given as a name is unhashable (and
            # reported as bad by its own check).
            if isinstance(name, str):
                seen_ids.add(name)
            if isinstance(var, str):
                seen_vars.add(var)
        return out

    def to_dict(self) -> dict:
        """The canonical config, defaults filled in, that the daemon stores as JSON."""
        data = self.model_dump(exclude_none=True)
        if not data.get("resources"):
            data.pop("resources", None)
        return data
