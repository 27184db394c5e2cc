"""Test a model in this process (the notebook kernel), through the real codec.

``load_local`` loads a model folder, a ``model.py`` or a cell's source here,
on this process's GPU, and returns an object whose methods mirror the
model's. Every call is encoded, serialized and decoded exactly as a deployed
call is, so a type mistake shows up here first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

from .client._methods import MethodMirror, call_error
from .errors import ConfigError, ModelDefinitionError
from .folder import model_folder_for
from .model._host import CallFailed, ModelHost, TransformerLoadError
from .model.codec import add_raw
from .proto import runner_pb2 as pb


class LocalModel(MethodMirror):
    """A model loaded in this process; its methods mirror the model's.

    ``model`` is the ModelClass instance itself, for poking at its state.

    Example::

        m = load_local("notebooks/models/echo")    # a LocalModel
        m.predict("hi"), m.model.prefix
    """

    def __init__(self, host: ModelHost):
        self._host = host
        self.model = host.instance
        self._mirror(host.specs, _LocalTransport(host))

    def __repr__(self) -> str:
        return f"<LocalModel {self._host.cls.__name__}: {', '.join(self.specs)}>"

    def test(self) -> bool:
        """Run the model's own ``test()``; False when it defines none."""
        return self._host.run_test()


class _LocalTransport:
    """Calls a ModelHost in this process, through bytes, as a runner call does."""

    def __init__(self, host: ModelHost):
        self._host = host

    def unary(self, request: pb.PredictRequest, raw: dict[str, bytes] | None = None) -> pb.Value:
        if raw:
            request = add_raw(request, raw)
        request = pb.PredictRequest.FromString(request.SerializeToString())
        try:
            response = self._host.call(request)
        except CallFailed as e:
            raise call_error(e.code, e.type, e.message, e.traceback) from None
        return pb.PredictResponse.FromString(response.SerializeToString()).output

    def server_stream(self, request: pb.PredictRequest) -> Iterator[pb.Value]:
        return self._stream(request, None)

    def bidi(self, request: pb.PredictRequest, items: Iterator[pb.Value]) -> Iterator[pb.Value]:
        failed: list[BaseException] = []

        def copied() -> Iterator[pb.Value]:
            try:
                for item in items:
                    yield pb.Value.FromString(item.SerializeToString())
            except BaseException as e:
                # The caller's own inputs broke (an item of the wrong type, a bug in its
                # generator): here the model pulls them, but the caller must get that
                # error, as over gRPC, not a ModelError.
                failed.append(e)
                raise

        return self._stream(request, copied(), failed)

    def _stream(self, request: pb.PredictRequest, items: Iterator[pb.Value] | None,
                failed: list[BaseException] | None = None) -> Iterator[pb.Value]:
        request = pb.PredictRequest.FromString(request.SerializeToString())
        try:
            outputs = self._host.stream(request, items)
            try:
                for value in outputs:
                    yield pb.Value.FromString(value.SerializeToString())
            finally:
                outputs.close()
        except CallFailed as e:
            if failed:
                raise failed[0] from None
            raise call_error(e.code, e.type, e.message, e.traceback) from None


def load_local(path_or_source: str | os.PathLike, *, run_test: bool = False,
               inference_batcher: dict | bool | None = None, transformer: bool = True) -> LocalModel:
    """Load a model in this process and return an object mirroring its methods.

    Args:
        path_or_source: a model folder, its ``1/model.py``, or source code
            holding one ModelClass subclass (a notebook cell).
        run_test: also run the model's ``test()`` after ``load_model``.
        inference_batcher: a deployment's ``inference_batcher`` settings, e.g.
            ``{"max_batch_size": 8}``: calls of ``batch=True`` methods made from
            several threads at once are then batched as a runner batches them.
            Without it each call is a batch of one.
        transformer: run the folder's ``1/transformer.py`` (if any) around every
            call, as a deployment does unless its config turns it off.

    Example::

        from jupyter_deploy import load_local

        m = load_local("models/echo")
        m.predict("hi")           # encoded, decoded and type-checked as a deployment would
        help(m.predict)           # the model's own signature and docstring
    """
    from .model._batcher import BatcherSettings

    try:
        batcher = BatcherSettings.from_mapping(inference_batcher)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    scratch = Path(tempfile.mkdtemp(prefix="jupyter_deploy_local_"))
    host = ModelHost(model_folder_for(path_or_source, scratch), batcher=batcher, transformer=transformer)
    try:
        host.load()
    except TransformerLoadError as e:
        raise ModelDefinitionError(str(e)) from None
    if run_test:
        host.run_test()
    return LocalModel(host)
