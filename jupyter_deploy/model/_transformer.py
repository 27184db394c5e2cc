"""The transformer contract: pre- and post-processing around a model's methods."""

from __future__ import annotations

from typing import Any


class Transformer:
    """Pre- and post-processing that a runner runs around every call of the model.

    Put one class in ``1/transformer.py`` beside ``1/model.py``. The runner
    creates it once per replica (no arguments), sets ``model_path`` and
    ``config`` as on the model, calls ``load()`` after the model's
    ``load_model()``, and then, for every call of every method:

    ``preprocess(method, inputs) -> inputs``
        ``inputs`` are the call's arguments by name, decoded to the types the
        method declares (the values callers sent). Return the arguments the
        model's method is called with (the same dict, changed, or a new one).
        For a bidirectional stream it runs once on the call's arguments and
        then on each incoming item on its own, as ``{stream_parameter: item}``.
        For a batchable method it runs once per caller, before batching.
    ``postprocess(method, output) -> output``
        Runs on the method's return value, or on each item a stream yields,
        per caller; what it returns is sent, so it must fit the method's
        return annotation.

    Subclass this class (both hooks default to passing values through) or write
    any class with both methods. An exception in either reaches the caller as a
    ``TransformerError`` naming the transformer, never as the model's error.
    A deployment runs the transformer by default; ``transformer: {enabled:
    false}`` in its config turns it off.

    Example (``1/transformer.py``)::

        from jupyter_deploy import Transformer

        class Normalize(Transformer):
            def load(self):
                self.suffix = "!"

            def preprocess(self, method, inputs):
                if "text" in inputs:
                    inputs["text"] = inputs["text"].strip().lower()
                return inputs

            def postprocess(self, method, output):
                return output + self.suffix if isinstance(output, str) else output
    """

    model_path: Any = None
    config: Any = None

    def load(self) -> None:
        """Load what the hooks need (vocabularies, scalers). Called once per replica."""

    def preprocess(self, method: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The arguments ``method`` is called with; by default the caller's, unchanged."""
        return inputs

    def postprocess(self, method: str, output: Any) -> Any:
        """What the caller gets for ``output`` (a result, or one stream item); by default ``output``."""
        return output
