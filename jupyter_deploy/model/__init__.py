"""The authoring SDK: what a ``model.py`` imports, and the loader that hosts one.

It imports nothing of the server side (no gRPC server, no control plane), so a
runner and a notebook kernel can both use it cheaply.

Example::

    from jupyter_deploy.model import ModelClass

    class Upper(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> str:
            return text.upper()

A model folder is loaded with ``load_folder``; the runner, ``load_local``, the
CLI and the upload's signature reading all use it (or its ``ModelHost``)::

    from jupyter_deploy.model import load_folder

    host = load_folder("models/echo")   # imports 1/model.py; load_model is not called
    host.describe()                     # the model id, class and method signatures
    host.load()                         # runs load_model
"""

from __future__ import annotations

from typing import Any

from ._model_class import ModelClass
from ._transformer import Transformer
from .signature import MethodSpec, ParamSpec, TypeNode
from .types import Audio, Concept, Frame, Region, Video

#: The loader, imported on first use: a model.py that only needs ModelClass should not
#: pay for the codec, config parsing and the batcher.
_LOADER = frozenset({"CallFailed", "ModelHost", "load_folder"})

__all__ = ["Audio", "CallFailed", "Concept", "Frame", "MethodSpec", "ModelClass", "ModelHost",
           "ParamSpec", "Region", "Transformer", "TypeNode", "Video", "load_folder"]


def __getattr__(name: str) -> Any:
    if name in _LOADER:
        from . import _host

        return getattr(_host, name)
    raise AttributeError(f"module 'jupyter_deploy.model' has no attribute {name!r}")
