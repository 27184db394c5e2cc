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

#: Each public name's module, imported on first use (PEP 562). The loader (``_host``): a
#: model.py that only needs ModelClass should not pay for the codec, config parsing and the
#: batcher. The rest: importing ``jupyter_deploy.model.types`` (as the notebook's renderers
#: do at ``%load_ext``) should not build the signature machinery.
_LAZY = {
    "CallFailed": "_host", "ModelHost": "_host", "load_folder": "_host",
    "ModelClass": "_model_class", "Transformer": "_transformer",
    "MethodSpec": "signature", "ParamSpec": "signature", "TypeNode": "signature",
    "Audio": "types", "Concept": "types", "Frame": "types", "Region": "types", "Video": "types",
}

__all__ = ["Audio", "CallFailed", "Concept", "Frame", "MethodSpec", "ModelClass", "ModelHost",
           "ParamSpec", "Region", "Transformer", "TypeNode", "Video", "load_folder"]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        if module != "_host":  # the loader stays out of the namespace, as it always has
            globals()[name] = value
        return value
    raise AttributeError(f"module 'jupyter_deploy.model' has no attribute {name!r}")
