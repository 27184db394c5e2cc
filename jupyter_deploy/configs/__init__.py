"""The typed config models, defined once and shared by the client, the daemon, the runner
and the CLI.

Each model validates what a user wrote (a YAML file or keyword arguments) and reports
every problem at once, one line each with its field path, in the project's words; each
exports its JSON Schema (``jupyter-deploy config schema <name>``).

Pydantic is imported here, so ``import jupyter_deploy`` does not import this package:
modules that validate import it inside the function that needs it.

Example::

    >>> from jupyter_deploy.configs import DeploymentConfig, validate
    >>> cfg, problems = validate(DeploymentConfig, {"worker": {"model": {"id": "echo"}}}, caller="local")
    >>> cfg.autoscale_config.max_replicas, problems
    (1, [])
    >>> validate(DeploymentConfig, {"worker": {}, "drain_seconds": -1})[1]
    [('worker.model.id', 'required: the id of the model to serve'), ('drain_seconds', 'must be at least 0, got -1')]
"""

from __future__ import annotations

from typing import Any

from ._base import ConfigModel, validate
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
from .model import Checkpoints, ComputeInfo, ConceptInfo, ModelConfig, ModelInfo

__all__ = [
    "SCHEMAS",
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
    "ModelConfig",
    "ModelInfo",
    "NodepoolConfig",
    "ResourcesConfig",
    "SecretRef",
    "TransformerConfig",
    "json_schema",
    "validate",
]

#: The config files a user writes, by the name ``jupyter-deploy config schema`` takes.
SCHEMAS: dict[str, type[ConfigModel]] = {
    "model": ModelConfig,
    "cluster": ComputeClusterConfig,
    "nodepool": NodepoolConfig,
    "deployment": DeploymentConfig,
}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the config file ``name`` (a key of ``SCHEMAS``): an object schema
    with ``properties`` at the top level and the sections under ``$defs``.

    >>> sorted(json_schema("cluster")["properties"])
    ['cloud_provider', 'description', 'id', 'region']
    """
    model = SCHEMAS[name]
    schema = model.model_json_schema()
    for key in model._also_known:  # accepted so that other tools' files load; ignored
        schema["properties"][key] = {"description": "accepted and ignored"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
