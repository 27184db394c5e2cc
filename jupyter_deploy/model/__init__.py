"""The authoring SDK: what a ``model.py`` imports.

It imports nothing of the server side (no gRPC server, no control plane), so a
runner and a notebook kernel can both use it cheaply.

Example::

    from jupyter_deploy.model import ModelClass

    class Upper(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> str:
            return text.upper()
"""

from ._model_class import ModelClass
from ._transformer import Transformer
from .signature import MethodSpec, ParamSpec, TypeNode
from .types import Audio, Concept, Frame, Region, Video

__all__ = ["Audio", "Concept", "Frame", "MethodSpec", "ModelClass", "ParamSpec", "Region",
           "Transformer", "TypeNode", "Video"]
