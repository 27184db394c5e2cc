"""Compute cluster, nodepool and deployment configs as the daemon takes them.

Each ``*_config(data, ...)`` takes the mapping a user wrote (a YAML file or
keyword arguments, same keys), validates it with its model in
``jupyter_deploy.configs`` and returns it normalized with defaults filled in
(what the daemon stores), or raises InvalidArgument listing every problem, one
line each, with its field path. The rest reads stored, already valid configs.

Example::

    deployment_config({"worker": {"model": {"id": "echo"}},
                       "autoscale_config": {"min_replicas": 2}}, caller="local")
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from .. import ids
from ._errors import InvalidArgument


def check_id(kind: str, value: str) -> None:
    """Refuse a bad resource id (InvalidArgument) with a message that says the rule."""
    ids.check_id(kind, value, error=InvalidArgument)


def _validated(model_name: str, what: str, data: Any, **context: Any) -> Any:
    """``data`` validated as ``jupyter_deploy.configs.<model_name>``; InvalidArgument listing every
    problem, one line each: ``<what>: <field path>: <problem>``."""
    from .. import configs

    config, problems = configs.validate(getattr(configs, model_name), {} if data is None else data,
                                        **context)
    if problems:
        raise InvalidArgument("\n".join(f"{what}: {path or '(top level)'}: {problem}"
                                        for path, problem in problems))
    return config


def cluster_config(data: Any) -> dict:
    """A compute cluster config (``ComputeClusterConfig``), normalized with its defaults."""
    cfg = _validated("ComputeClusterConfig", "compute cluster config", data).model_dump()
    if cfg["cloud_provider"] != "ray":
        del cfg["ray_address"]  # a local cluster's stored config stays as it always was
    return cfg


def nodepool_config(data: Any, host: Any, where: str = "this host") -> dict:
    """A nodepool config (``NodepoolConfig``); every field defaults to ``host`` (a HostInfo: this
    host, or the largest Ray node the pool selects, as ``where`` says in messages)."""
    cfg = _validated("NodepoolConfig", "nodepool config", data, host=host, where=where).model_dump()
    if not cfg["node_labels"]:
        del cfg["node_labels"]  # as above: only Ray pools have labels
    return cfg


def deployment_config(data: Any, caller: str) -> dict:
    """A deployment config (``DeploymentConfig``) as the canonical mapping the daemon stores:
    the model it serves (its owner defaults to ``caller``), its scaling and its serving settings,
    defaults filled in."""
    return _validated("DeploymentConfig", "deployment config", data, caller=caller).to_dict()


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


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied key by key (nested mappings merged)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
