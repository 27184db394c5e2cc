"""jupyter_deploy: put a model into production from a notebook.

Write a ``ModelClass`` in a cell, test it in the kernel with ``load_local``,
serve it with a runner and call it with ``RunnerClient``::

    from jupyter_deploy import ModelClass, load_local

    class Upper(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> str:
            return text.upper()

Heavy modules (gRPC, the runner, pandas) load on first use, so importing
jupyter_deploy stays fast.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import (
    ConfigError,
    ControlPlaneError,
    DeployError,
    DeploymentError,
    InputError,
    ModelDefinitionError,
    ModelError,
    NotFoundError,
    RunnerError,
    TransformerError,
)
from .model import Audio, Concept, Frame, ModelClass, Region, Transformer, Video

_LAZY = {
    "load_local": "jupyter_deploy.local",
    "LocalModel": "jupyter_deploy.local",
    "RunnerClient": "jupyter_deploy.client",
    "Client": "jupyter_deploy.client",
    "ComputeCluster": "jupyter_deploy.client",
    "Nodepool": "jupyter_deploy.client",
    "Deployment": "jupyter_deploy.client",
    "Model": "jupyter_deploy.client",
    "to_dataframe": "jupyter_deploy.client",
    "predict_form": "jupyter_deploy.notebook.widgets",
}

__all__ = [
    "Audio", "Client", "ComputeCluster", "Concept", "ConfigError", "ControlPlaneError", "DeployError",
    "Deployment", "DeploymentError", "Frame", "InputError", "LocalModel", "Model", "ModelClass",
    "ModelDefinitionError", "ModelError", "Nodepool", "NotFoundError", "Region", "RunnerClient",
    "RunnerError", "Transformer", "TransformerError", "Video", "__version__", "load_local", "predict_form",
    "to_dataframe",
]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_deploy``: register ``%%deploy``, ``%predict`` and ``%stream``."""
    from .notebook.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext jupyter_deploy``: remove the magics and close their client."""
    from .notebook.magics import unload_ipython_extension as unload

    unload(ip)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt sidebar (installed under share/jupyter/labextensions)."""
    return [{"src": "labextension", "dest": "jupyter-deploy"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The server extension behind the sidebar (imported only by jupyter_server)."""
    from .server import DeployServerExtension

    return [{"module": "jupyter_deploy.server", "app": DeployServerExtension}]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jupyter_deploy' has no attribute {name!r}")
