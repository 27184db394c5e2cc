"""Compute cluster, nodepool and deployment configs: validated in one place.

Each ``*_config(data, ...)`` takes the mapping a user wrote (a YAML file or
keyword arguments, same keys) and returns it normalized with defaults filled
in, or raises InvalidArgument listing every problem, one line each, with its
field path.

Example::

    deployment_config({"worker": {"model": {"id": "echo"}},
                       "autoscale_config": {"min_replicas": 2}}, caller="local")
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from .. import _autoscale as autoscale
from ..config import parse_quantity
from ..model._batcher import check_settings as check_batcher
from ..runner._telemetry import DEFAULT_INLINE_BYTES
from ._calllog import DEFAULT_MAX_AGE, DEFAULT_MAX_RECORDS
from ._errors import InvalidArgument
from ._secrets import ENV_VAR_RE
from ._secrets import NAME_RE as SECRET_NAME_RE

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Deployment ids: letters and digits only (the Hopsworks rule).
DEPLOYMENT_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


class _Checker:
    def __init__(self, what: str):
        self.what = what
        self.errors: list[str] = []

    def error(self, path: str, problem: str) -> None:
        self.errors.append(f"{self.what}: {path}: {problem}")

    def mapping(self, data: Any, path: str, known: set[str]) -> dict:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.error(path or "(top level)", f"expected a mapping, got {type(data).__name__}")
            return {}
        for key in data:
            if key not in known:
                self.error(f"{path}.{key}" if path else str(key),
                           f"unknown field (known: {', '.join(sorted(known))})")
        return data

    def text(self, data: dict, key: str, path: str, default: str = "") -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {type(value).__name__} {value!r}")
            return default
        return value

    def ident(self, data: dict, key: str, path: str, default: str = "") -> str:
        value = self.text(data, key, path, default)
        if value and not ID_RE.match(value):
            self.error(path, f"bad id {value!r} (use letters, digits, '-', '_' and '.')")
        return value

    def integer(self, data: dict, key: str, path: str, default: int, minimum: int = 0) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected an integer, got {type(value).__name__} {value!r}")
            return default
        if value < minimum:
            self.error(path, f"must be at least {minimum}, got {value}")
        return value

    def number(self, data: dict, key: str, path: str, default: float, minimum: float = 0) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(path, f"expected a number of seconds, got {type(value).__name__} {value!r}")
            return default
        if value < minimum:
            self.error(path, f"must be at least {minimum:g}, got {value:g}")
        return float(value)

    def quantity(self, data: dict, key: str, path: str) -> float | None:
        if data.get(key) is None:
            return None
        try:
            return parse_quantity(data[key])
        except ValueError as e:
            self.error(path, str(e))
            return None

    def done(self) -> None:
        if self.errors:
            raise InvalidArgument("\n".join(self.errors))


def check_id(kind: str, value: str) -> None:
    """Refuse a bad resource id with a message that says the rule."""
    if kind == "deployment":
        if not DEPLOYMENT_ID_RE.match(value or ""):
            raise InvalidArgument(f"bad deployment id {value!r}: use letters and digits only "
                                  "(at most 64), e.g. 'echo1'")
    elif not ID_RE.match(value or ""):
        raise InvalidArgument(f"bad {kind.replace('_', ' ')} id {value!r}: use letters, digits, "
                              "'-', '_' and '.', starting with a letter or digit")


def cluster_config(data: Any) -> dict:
    c = _Checker("compute cluster config")
    data = c.mapping(data, "", {"cloud_provider", "region", "description", "id"})
    provider = data.get("cloud_provider") or "local"
    if isinstance(provider, dict):  # the Clarifai form: cloud_provider: {id: local}
        provider = provider.get("id", "local")
    if provider not in ("local", "ray"):
        c.error("cloud_provider", f"unknown provider {provider!r} (use local; ray is planned)")
    elif provider == "ray":
        c.error("cloud_provider", "the ray backend is not available yet; use local")
    out = {"cloud_provider": provider, "region": c.text(data, "region", "region", "local"),
           "description": c.text(data, "description", "description")}
    c.done()
    return out


def nodepool_config(data: Any, host: Any) -> dict:
    """A nodepool config; every field defaults to this host (``host`` is a HostInfo)."""
    c = _Checker("nodepool config")
    data = c.mapping(data, "", {"instance_type", "min_instances", "max_instances", "description", "id"})
    it = c.mapping(data.get("instance_type"), "instance_type",
                   {"cpus", "memory", "accelerators", "accelerator_type"})
    cpus = c.quantity(it, "cpus", "instance_type.cpus")
    memory = c.quantity(it, "memory", "instance_type.memory")
    gpus = c.integer(it, "accelerators", "instance_type.accelerators", len(host.gpus))
    out = {
        "instance_type": {
            "cpus": cpus if cpus is not None else float(host.cpus),
            "memory": memory if memory is not None else float(host.memory),
            "accelerators": gpus,
            "accelerator_type": c.text(it, "accelerator_type", "instance_type.accelerator_type",
                                       host.gpus[0].name if host.gpus else ""),
        },
        "min_instances": c.integer(data, "min_instances", "min_instances", 0),
        "max_instances": c.integer(data, "max_instances", "max_instances", 1, minimum=1),
        "description": c.text(data, "description", "description"),
    }
    # The local backend is this one host: a nodepool cannot promise more than it has.
    if out["instance_type"]["memory"] > host.memory:
        c.error("instance_type.memory", f"{out['instance_type']['memory']:.0f} bytes is more than "
                f"this host has ({host.memory})")
    if gpus > len(host.gpus):
        c.error("instance_type.accelerators",
                f"{gpus} GPU(s) asked, this host has {len(host.gpus)}")
    c.done()
    return out


def deployment_config(data: Any, caller: str) -> dict:
    """A deployment config: the model it serves, its scaling and whether it is the default."""
    c = _Checker("deployment config")
    data = c.mapping(data, "", {"worker", "autoscale_config", "nodepools", "default", "id",
                                "description", "resources", "python", "drain_seconds", "run_test", "secrets",
                                "inference_logger", "inference_batcher", "transformer"})
    worker = c.mapping(data.get("worker"), "worker", {"model"})
    model = c.mapping(worker.get("model"), "worker.model", {"id", "user_id", "app_id", "model_version"})
    if not model.get("id"):
        c.error("worker.model.id", "required: the id of the model to serve")
    version = c.mapping(model.get("model_version"), "worker.model.model_version", {"id"})
    resources = c.mapping(data.get("resources"), "resources", {"num_accelerators"})
    out = {
        "worker": {"model": {
            "id": c.ident(model, "id", "worker.model.id"),
            "user_id": c.ident(model, "user_id", "worker.model.user_id", caller),
            "app_id": c.ident(model, "app_id", "worker.model.app_id", "default"),
            "model_version": {"id": c.text(version, "id", "worker.model.model_version.id")},
        }},
        "autoscale_config": _autoscale_config(c, data.get("autoscale_config")),
        "default": bool(data.get("default", False)),
        "description": c.text(data, "description", "description"),
        "drain_seconds": c.integer(data, "drain_seconds", "drain_seconds", 5),
        # The first replica of each version runs the model's test() before it serves.
        "run_test": data.get("run_test", True),
    }
    if not isinstance(out["run_test"], bool):
        c.error("run_test", "expected true or false")
    if "num_accelerators" in resources:
        out["resources"] = {"num_accelerators": c.integer(
            resources, "num_accelerators", "resources.num_accelerators", 0)}
    secrets = _secrets(c, data.get("secrets"))
    if secrets:
        out["secrets"] = secrets
    out["inference_logger"] = _inference_logger(c, data.get("inference_logger"))
    if data.get("transformer") is not None:
        out["transformer"] = _transformer(c, data["transformer"])
    if data.get("inference_batcher") is not None:
        out["inference_batcher"], problems = check_batcher(data["inference_batcher"])
        for key, problem in problems:
            c.error(f"inference_batcher.{key}" if key else "inference_batcher", problem)
    if data.get("python"):
        out["python"] = c.text(data, "python", "python")
    if not isinstance(data.get("default", False), bool):
        c.error("default", "expected true or false")
    c.done()
    return out


def _autoscale_config(c: _Checker, data: Any) -> dict:
    """``autoscale_config`` (see ``jupyter_deploy._autoscale`` for the fields and their defaults)."""
    settings, problems = autoscale.normalize(data)
    for field, problem in problems:
        c.error(f"autoscale_config.{field}" if field else "autoscale_config", problem)
    return settings


#: What the inference logger records beside every call's access record.
LOGGER_MODES = ("none", "model_inputs", "predictions", "all")


def _inference_logger(c: _Checker, data: Any) -> dict:
    """``inference_logger: {mode, max_records, max_age_seconds, max_inline_bytes}`` with defaults.

    The retention limits apply to all of the deployment's records, access records included.
    """
    if isinstance(data, str):  # `inference_logger: all`, the short form
        data = {"mode": data}
    logger = c.mapping(data, "inference_logger", {"mode", "max_records", "max_age_seconds", "max_inline_bytes"})
    mode = c.text(logger, "mode", "inference_logger.mode", "none")
    if mode not in LOGGER_MODES:
        c.error("inference_logger.mode", f"unknown mode {mode!r} (use {', '.join(LOGGER_MODES)})")
        mode = "none"
    return {"mode": mode,
            "max_records": c.integer(logger, "max_records", "inference_logger.max_records",
                                     DEFAULT_MAX_RECORDS, minimum=1),
            "max_age_seconds": c.number(logger, "max_age_seconds", "inference_logger.max_age_seconds",
                                        DEFAULT_MAX_AGE, minimum=1),
            "max_inline_bytes": c.integer(logger, "max_inline_bytes", "inference_logger.max_inline_bytes",
                                          DEFAULT_INLINE_BYTES)}
def _transformer(c: _Checker, data: Any) -> dict:
    """``transformer: {enabled: true|false}`` (or just true/false): whether 1/transformer.py runs."""
    if isinstance(data, bool):
        return {"enabled": data}
    section = c.mapping(data, "transformer", {"enabled"})
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        c.error("transformer.enabled", f"expected true or false, got {enabled!r}")
        enabled = True
    return {"enabled": enabled}


def runner_args(cfg: dict) -> list[str]:
    """The runner command-line flags that carry a (checked) deployment config's serving settings.

    >>> runner_args({"inference_batcher": {"enabled": True, "max_batch_size": 8}})
    ['--inference-batcher', '{"enabled": true, "max_batch_size": 8}']
    """
    args = []
    if not cfg.get("transformer", {}).get("enabled", True):
        args.append("--no-transformer")
    if cfg.get("inference_batcher"):
        args += ["--inference-batcher", json.dumps(cfg["inference_batcher"])]
    return args


#: The deployment settings a replica reads when it starts (command-line flags, environment,
#: interpreter, GPUs): changing one rolls the replicas out like a new version. The others
#: (autoscale_config, inference_logger, drain_seconds, ...) reach running replicas as they are.
RUNNER_KEYS = ("inference_batcher", "transformer", "python", "secrets", "resources")


def runner_settings(cfg: dict) -> dict:
    """The part of a deployment config its replicas start with (the keys of ``RUNNER_KEYS`` it has)."""
    return {key: cfg[key] for key in RUNNER_KEYS if cfg.get(key) is not None}


def with_runner_settings(cfg: dict, settings: dict) -> dict:
    """``cfg`` with its runner settings replaced by ``settings`` (a rollback to what a replica started with)."""
    return {**{k: v for k, v in cfg.items() if k not in RUNNER_KEYS}, **settings}


def replica_spec(version_id: str, cfg: dict) -> str:
    """A short hash of what a replica of ``version_id`` starts with under the deployment config ``cfg``.

    Replicas whose spec is not their deployment's are replaced, as on a new version.

    >>> replica_spec("v1", {}) == replica_spec("v1", {"transformer": {"enabled": True}, "drain_seconds": 9})
    True
    >>> replica_spec("v1", {}) == replica_spec("v1", {"transformer": {"enabled": False}})
    False
    """
    resources = cfg.get("resources") or {}
    what = [version_id, runner_args(cfg), cfg.get("python") or "", cfg.get("secrets") or [],
            resources.get("num_accelerators") if isinstance(resources, dict) else None]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=256)
def deployment_spec(version_id: str, config_json: str) -> str:
    """``replica_spec`` of a deployment row's ``version_id`` and ``config_json`` (cached: route() asks per call)."""
    return replica_spec(version_id, json.loads(config_json or "{}"))


#: Environment variables the scheduler sets itself: a secret may not take their place.
RESERVED_ENV = {"MODEL_PATH", "MODEL_VERSION", "DEPLOYMENT_ID", "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED"}


def _secrets(c: _Checker, data: Any) -> list[dict]:
    """``secrets: [{id: NAME, env_var: VAR}]``: names and variables only, never a value."""
    if data is None:
        return []
    if not isinstance(data, list):
        c.error("secrets", f"expected a list of {{id: NAME, env_var: VAR}}, got {type(data).__name__}")
        return []
    out, seen_ids, seen_vars = [], set(), set()
    for i, item in enumerate(data):
        path = f"secrets[{i}]"
        item = c.mapping(item, path, {"id", "env_var"})
        name = c.text(item, "id", f"{path}.id")
        var = c.text(item, "env_var", f"{path}.env_var")
        if not name:
            c.error(f"{path}.id", "required: the name of a secret (client.set_secret(name, value))")
        elif not SECRET_NAME_RE.match(name):
            c.error(f"{path}.id", f"bad secret name {name!r} (use letters, digits, '_', '-' and '.', at most 128)")
        elif name in seen_ids:
            c.error(f"{path}.id", f"secret {name} is listed twice")
        if not var:
            c.error(f"{path}.env_var", "required: the environment variable the runner sees it as, e.g. API_KEY")
        elif not ENV_VAR_RE.match(var):
            c.error(f"{path}.env_var", f"bad environment variable name {var!r} (use A-Z, 0-9 and '_', "
                    "not starting with a digit, e.g. API_KEY)")
        elif var in RESERVED_ENV or var.startswith("JUPYTER_DEPLOY_"):
            c.error(f"{path}.env_var", f"{var} is set by jupyter_deploy itself; choose another name")
        elif var in seen_vars:
            c.error(f"{path}.env_var", f"environment variable {var} is given twice")
        seen_ids.add(name)
        seen_vars.add(var)
        out.append({"id": name, "env_var": var})
    return out


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied key by key (nested mappings merged)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
