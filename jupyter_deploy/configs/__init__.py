"""The typed config models, defined once and shared by the client, the daemon, the runner
and the CLI.

Each model validates what a user wrote (a YAML file or keyword arguments) and reports
every problem at once, one line each with its field path; each exports its JSON Schema
(``jupyter-deploy config schema <name>``).

Pydantic is imported here, so ``import jupyter_deploy`` does not import this package:
modules that validate import it inside the function that needs it.

Example::

    >>> from jupyter_deploy.configs import DeploymentConfig
    >>> cfg = DeploymentConfig.model_validate({"worker": {"model": {"id": "echo"}}},
    ...                                       context={"caller": "local"})
    >>> cfg.autoscale_config.max_replicas
    1
"""

from __future__ import annotations

from .model import Checkpoints, ComputeInfo, ConceptInfo, ModelConfig, ModelInfo

__all__ = ["Checkpoints", "ComputeInfo", "ConceptInfo", "ModelConfig", "ModelInfo"]
