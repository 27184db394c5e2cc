"""The typed config models, defined once and shared by the client, the daemon, the runner
and the CLI.

Each model validates what a user wrote (a YAML file or keyword arguments) and reports
every problem at once, one line each with its field path, in the project's words; each
exports its JSON Schema (``jupyter-deploy config schema <name>``).

Pydantic is imported here, so ``import jupyter_deploy`` does not import this package:
modules that validate import it inside the function that needs it.

Example::

    >>> from jupyter_deploy.configs import DeploymentConfig, validate
    >>> data = {"worker": {"model": {"id": "echo"}}}
    >>> cfg, problems = validate(DeploymentConfig, data, caller="local")
    >>> cfg.autoscale_config.max_replicas, problems
    (1, [])
    >>> for path, problem in validate(DeploymentConfig, {"worker": {}, "drain_seconds": -1})[1]:
    ...     print(f"{path}: {problem}")
    worker.model.id: required: the id of the model to serve
    drain_seconds: must be at least 0, got -1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import ConfigModel, validate

if TYPE_CHECKING:
    from .compute import ComputeClusterConfig, InstanceType, NodepoolConfig
    from .deployment import (
        AutoscaleConfig,
        BatcherConfig,
        DeploymentConfig,
        InferenceLoggerConfig,
        ResourcesConfig,
        SecretRef,
        TransformerConfig,
    )
    from .limits import LimitsConfig, UserLimits
    from .model import Checkpoints, ComputeInfo, ConceptInfo, ModelConfig, ModelInfo

# Each module is imported when one of its models is first asked for: a runner that only
# reads config.yaml does not build the deployment models (pydantic builds a validator per class).
_MODULES = {
    "model": ("Checkpoints", "ComputeInfo", "ConceptInfo", "ModelConfig", "ModelInfo"),
    "compute": ("ComputeClusterConfig", "InstanceType", "NodepoolConfig"),
    "deployment": (
        "AutoscaleConfig",
        "BatcherConfig",
        "DeploymentConfig",
        "InferenceLoggerConfig",
        "ResourcesConfig",
        "SecretRef",
        "TransformerConfig",
    ),
    "limits": ("LimitsConfig", "UserLimits"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AutoscaleConfig",
    "BatcherConfig",
    "Checkpoints",
    "ComputeClusterConfig",
    "ComputeInfo",
    "ConceptInfo",
    "ConfigModel",
    "DeploymentConfig",
    "InferenceLoggerConfig",
    "InstanceType",
    "LimitsConfig",
    "ModelConfig",
    "ModelInfo",
    "NodepoolConfig",
    "ResourcesConfig",
    "SecretRef",
    "TransformerConfig",
    "UserLimits",
    "json_schema",
    "schema_names",
    "validate",
]

#: The config files a user writes, by the name ``jupyter-deploy config schema`` takes.
_SCHEMAS = {
    "model": "ModelConfig",
    "cluster": "ComputeClusterConfig",
    "nodepool": "NodepoolConfig",
    "deployment": "DeploymentConfig",
    "limits": "LimitsConfig",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def schema_names() -> tuple[str, ...]:
    """The names ``json_schema`` takes: ``model`` (config.yaml), ``cluster``, ``nodepool``,
    ``deployment``, ``limits`` (the admin's ``home/limits.yaml``)."""
    return tuple(_SCHEMAS)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the config file ``name`` (one of ``schema_names()``): an object schema
    with ``properties`` at the top level and the sections under ``$defs``.

    >>> sorted(json_schema("cluster")["properties"])
    ['cloud_provider', 'description', 'id', 'region']
    """
    model = __getattr__(_SCHEMAS[name])
    schema = model.model_json_schema()
    for key in model._also_known:  # accepted so that other tools' files load; ignored
        schema["properties"][key] = {"description": "accepted and ignored"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
