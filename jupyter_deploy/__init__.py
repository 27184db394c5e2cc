"""jupyter_deploy: put a model into production from a notebook.

Write a ``ModelClass`` in a cell, test it in the kernel with ``load_local``,
deploy it with ``Client().deploy`` (or ``%%deploy`` after ``%load_ext jupyter_deploy``,
or ``jupyter-deploy deploy``), and call the deployed model's own methods::

    from jupyter_deploy import Client, Model, ModelClass, load_local

    class Upper(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> str:
            return text.upper()

    load_local(SOURCE).predict("hi")                 # SOURCE: the class above, as text
    Client().deploy(SOURCE, "upper")                 # upload, deploy, wait until ready
    Model(model_id="upper").predict("hi")            # 'HI', from a replica

A model trained in the notebook is served without writing a ModelClass:
``Client().deploy(package(estimator, "iris", sample=X.head()))`` (or ``%deploy iris
--object estimator --sample X.head()``).

The public names are listed in ``__all__`` (and by ``dir(jupyter_deploy)``). Heavy
modules (gRPC, pandas, the client) load on first use, so importing jupyter_deploy
stays fast.
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

#: Public name -> the module that defines it, imported on first use (PEP 562): `import
#: jupyter_deploy` costs the errors and the version only, and a name costs what its module needs
#: (ModelClass: dataclasses and inspect, no protobuf; Client: gRPC).
_LAZY = {
    "Audio": "jupyter_deploy.model.types",
    "Concept": "jupyter_deploy.model.types",
    "Frame": "jupyter_deploy.model.types",
    "Region": "jupyter_deploy.model.types",
    "Video": "jupyter_deploy.model.types",
    "ModelClass": "jupyter_deploy.model",
    "Transformer": "jupyter_deploy.model",
    "load_local": "jupyter_deploy.local",
    "LocalModel": "jupyter_deploy.local",
    "RunnerClient": "jupyter_deploy.client",
    "Client": "jupyter_deploy.client",
    "ComputeCluster": "jupyter_deploy.client",
    "Nodepool": "jupyter_deploy.client",
    "Deployment": "jupyter_deploy.client",
    "Model": "jupyter_deploy.client",
    "Event": "jupyter_deploy.client",
    "Readiness": "jupyter_deploy.client",
    "Rollout": "jupyter_deploy.client",
    "to_dataframe": "jupyter_deploy.client",
    "load_folder": "jupyter_deploy.model",
    "predict_form": "jupyter_deploy.notebook.widgets",
    "package": "jupyter_deploy.packaging",
}

__all__ = [
    "Audio", "Client", "ComputeCluster", "Concept", "ConfigError", "ControlPlaneError", "DeployError",
    "Deployment", "DeploymentError", "Event", "Frame", "InputError", "LocalModel", "Model", "ModelClass",
    "ModelDefinitionError", "ModelError", "Nodepool", "NotFoundError", "Readiness", "Region", "Rollout",
    "RunnerClient", "RunnerError", "Transformer", "TransformerError", "Video", "__version__",
    "load_folder", "load_local", "package", "predict_form", "to_dataframe",
]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_deploy``: register ``%%deploy``, ``%predict`` and ``%stream``."""
    from .notebook._extension import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext jupyter_deploy``: remove the magics and close their client."""
    from .notebook._extension import unload_ipython_extension as unload

    unload(ip)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt sidebar (installed under share/jupyter/labextensions)."""
    return [{"src": "labextension", "dest": "jupyter-deploy"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The server extension behind the sidebar (imported only by jupyter_server)."""
    from .server import DeployServerExtension

    return [{"module": "jupyter_deploy.server", "app": DeployServerExtension}]


def __dir__() -> list[str]:
    # The public names, lazy ones included; not the submodules and helpers a module namespace holds.
    return sorted({*__all__, "load_ipython_extension", "unload_ipython_extension"})


#: Subpackages that `import jupyter_deploy` used to import as a side effect, so that
#: ``jupyter_deploy.model.X`` after a bare ``import jupyter_deploy`` still works.
_SUBMODULES = frozenset({"model"})


def __getattr__(name: str) -> Any:
    if name in _LAZY or name in _SUBMODULES:
        import importlib

        if name in _SUBMODULES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jupyter_deploy' has no attribute {name!r}")
