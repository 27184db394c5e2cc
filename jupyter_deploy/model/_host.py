"""Loading a model folder and calling the model it holds, independent of gRPC.

``ModelHost`` imports a folder's model (and transformer) classes and reads its
config; once loaded it decodes a request against the method's spec, calls the
model (sync or async, unary or streaming, batched or not, through the
transformer) and encodes what it returns. The runner's gRPC service, the
in-kernel local test (``jupyter_deploy.local``), the CLI's ``run-locally`` and
the client's upload (which reads a folder's signatures) all go through it, so
they behave the same.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import sys
import threading
import traceback
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ConfigError, InputError, ModelDefinitionError
from ..folder import TRANSFORMER_FILE, load_model_class, load_transformer_class, model_file
from ..proto import runner_pb2 as pb
from ._batcher import Batcher, BatcherSettings, BatchTimeout
from ._model_class import Deferred, ModelClass
from .codec import Mismatch, args_decoder, decode_value, encoder, set_plain
from .signature import UNARY, MethodSpec, method_to_proto


class CallFailed(Exception):
    """A call failed; ``code`` is the gRPC status name a remote caller gets."""

    def __init__(self, code: str, type: str, message: str, traceback: str = ""):
        super().__init__(message)
        self.code, self.type, self.message, self.traceback = code, type, message, traceback

    def to_proto(self) -> pb.Error:
        return pb.Error(code=self.code, type=self.type, message=self.message, traceback=self.traceback)

    def record(self) -> dict[str, str]:
        """The error as a call's access record keeps it (``CallRecorder.end``)."""
        return {"code": self.code, "type": self.type, "message": self.message}


class TransformerLoadError(Exception):
    """The transformer's constructor or ``load()`` raised; the message names it."""


class NotSwappable(Exception):
    """A hot reload was refused: the new version changes more than method bodies (the message says what)."""


def invalid(message: str) -> CallFailed:
    return CallFailed("INVALID_ARGUMENT", "InputError", message)


class ModelHost:
    """Loads one model folder and serves calls into it.

    Creating one imports the folder's ``1/model.py`` (and ``1/transformer.py``)
    and reads its config.yaml; ``load()`` creates the model and runs its
    ``load_model``. ``load_folder`` makes one from a deployment's settings.

    Example::

        host = ModelHost("models/echo")
        host.describe()           # model id, class and method signatures; no weights loaded
        host.load()
        host.call(pb.PredictRequest(method="predict", args=[...]))
    """

    def __init__(self, model_dir: str | Path, model_cls: type[ModelClass] | None = None, *,
                 batcher: BatcherSettings | None = None, transformer: bool = True):
        self.model_dir = Path(model_dir)
        self.cls = model_cls or load_model_class(self.model_dir)
        # Imported (and so checked) even when it will not run: an upload reads signatures through here.
        self.transformer_cls = load_transformer_class(self.model_dir) if self.model_dir.is_dir() else None
        self.transformer_enabled = transformer and self.transformer_cls is not None
        self.transformer: Any = None
        self.specs: dict[str, MethodSpec] = self.cls.method_specs()
        #: The module the model class was defined in: a hot reload builds the new one from it.
        self.module = sys.modules.get(self.cls.__module__)
        self.instance: ModelClass | None = None
        #: Per method: (its spec, argument decoder, output encoder); see ``_rules``.
        self._compiled: dict[str, tuple[MethodSpec, Any, Any]] = {}
        self._reload_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self.batcher_settings = batcher or BatcherSettings()
        #: One Batcher per batchable method when batching is enabled; without one, a
        #: batchable method is called with a batch of one.
        self.batchers: dict[str, Batcher] = {}
        if self.batcher_settings.enabled:
            for spec in self.specs.values():
                if spec.batch:
                    self.batchers[spec.name] = Batcher(
                        spec.name, lambda batch, spec=spec: self._run_batch(spec, batch), self.batcher_settings)

    @functools.cached_property
    def config(self) -> Any:
        """The folder's config.yaml, checked (None without one). Read on first use: a replica
        whose model asks nothing of it starts without the config validator (pydantic)."""
        from ..config import load_config

        if not (self.model_dir / "config.yaml").is_file():
            return None
        return load_config(self.model_dir)

    @property
    def config_read(self) -> bool:
        return "config" in self.__dict__

    @functools.cached_property
    def _unchecked_config(self) -> dict | None:
        """config.yaml as plain data, not checked (None if unreadable or not a mapping): what
        the host needs of it before anything asks for the checked config."""
        import yaml

        try:
            data = yaml.safe_load((self.model_dir / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def _declares_checkpoints(self) -> bool:
        data = self._unchecked_config
        return data is None or data.get("checkpoints") is not None  # unreadable: the checked read says why

    def describe(self) -> pb.ModelDescription:
        written = (self._unchecked_config or {}).get("model")
        if not self.config_read and isinstance(written, dict) and isinstance(written.get("id"), str):
            model_id = written["id"]  # as written: a served folder was checked when it was uploaded
        else:
            model_id = self.config.model.id if self.config is not None else self.cls.__name__.lower()
        return pb.ModelDescription(
            model_id=model_id, class_name=self.cls.__name__, doc=inspect.getdoc(self.cls) or "",
            methods=[method_to_proto(s) for s in self.specs.values()])

    # ------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Create the model object and run its ``load_model`` (raises what it raises)."""
        from ..checkpoints import resolve_checkpoint

        instance = self.cls()
        instance.model_path = self.model_dir
        instance.config = Deferred(lambda: self.config)
        instance.checkpoint_path = (resolve_checkpoint(self.config.checkpoints, self.model_dir)
                                    if self._declares_checkpoints() and self.config is not None else None)
        instance.load_model()
        self.instance = instance
        if self.transformer_enabled:
            self.transformer = self._load_transformer()

    def _load_transformer(self) -> Any:
        name = self.transformer_cls.__name__
        try:
            transformer = self.transformer_cls()
            transformer.model_path = self.model_dir
            transformer.config = self.config
            if callable(getattr(transformer, "load", None)):
                transformer.load()
        except Exception as e:
            failure = self.model_failure(e)
            raise TransformerLoadError(f"transformer {name} ({TRANSFORMER_FILE}) failed to load: "
                                       f"{failure.type}: {failure.message}\n{failure.traceback}") from None
        return transformer

    def run_test(self) -> bool:
        """Run the model's ``test()`` if it defines one; return whether it did."""
        test = getattr(self.instance, "test", None)
        if test is None or getattr(type(self.instance), "test", None) is None:
            return False
        result = test()
        if inspect.iscoroutine(result):
            self._run_coroutine(result)
        return True

    def reload(self, model_dir: str | Path, run_test: bool = False) -> str:
        """Swap in the code of the model folder ``model_dir``, keeping the loaded state (a hot reload).

        Allowed only when ``model_dir`` differs from the served folder in method bodies alone
        (``_hot.hot_swappable``; NotSwappable otherwise). The new model class is built from the
        new ``model.py`` (``_hot.rebuild_module``) and given the served instance's ``__dict__``,
        without ``__init__`` or ``load_model``. With ``run_test`` its ``test()`` runs first, on a
        copy of that ``__dict__``, so a failing test changes nothing. Then one assignment switches:
        calls in flight finish on the old code, new calls get the new code. Returns what changed.

        Raises NotSwappable, ModelDefinitionError (the new code does not define), or what the
        new ``test()`` raised; in each case the old code still serves.

        Example::

            host.reload("versions/v2", run_test=True)   # 'predict() changed'
        """
        from ._hot import hot_swappable, rebuild_module

        new_dir = Path(model_dir)
        with self._reload_lock:
            old = self.instance
            if old is None or self.module is None:
                raise NotSwappable("the model is not loaded")
            ok, what = hot_swappable(self.model_dir, new_dir)
            if not ok:
                raise NotSwappable(what)
            file = model_file(new_dir).resolve()
            source = file.read_text()
            name = "jupyter_deploy_model_" + hashlib.sha256(f"{file}\0{source}".encode()).hexdigest()[:16]
            try:
                module = rebuild_module(self.module, source, file, name)
            except Exception as e:
                raise ModelDefinitionError(f"{file}: {type(e).__name__}: {e}") from None
            classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, ModelClass)
                       and c.__module__ == name]
            if len(classes) != 1:
                sys.modules.pop(name, None)
                raise ModelDefinitionError(f"{file}: must define exactly one ModelClass subclass")
            cls = classes[0]
            try:
                specs = cls.method_specs()
                if run_test and getattr(cls, "test", None) is not None:
                    candidate = object.__new__(cls)
                    candidate.__dict__.update(old.__dict__)  # a copy: what a failing test sets is dropped
                    result = candidate.test()
                    if inspect.iscoroutine(result):
                        self._run_coroutine(result)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            swapped = object.__new__(cls)
            swapped.__dict__ = old.__dict__  # the same dict: what calls in flight still set is kept
            _rebase(swapped.__dict__, self.model_dir, new_dir)
            if self.transformer is not None:  # (its file is unchanged: it stays, pointed at the new folder)
                _rebase(self.transformer.__dict__, self.model_dir, new_dir)
            # The switch. A call reads self.instance once, so it runs wholly on old or new code;
            # the specs are equal (signatures may not change), so either pairs with either.
            before = self.module
            self.cls, self.module, self.specs, self.model_dir = cls, module, specs, new_dir
            self.instance = swapped
            if sys.modules.get(before.__name__) is before:
                del sys.modules[before.__name__]  # calls in flight keep it through their functions' globals
            return what

    def concurrency(self, requested: int) -> int:
        """Calls to admit at once: ``requested``, raised so a full batch can queue while one runs."""
        if self.batchers:
            return max(requested, 2 * self.batcher_settings.max_batch_size)
        return requested

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # ------------------------------------------------------------ calls

    def spec(self, name: str, shape: str | None = None) -> MethodSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise invalid(f"unknown method '{name}' (methods: {', '.join(self.specs)})")
        if shape is not None and spec.shape != shape:
            rpc = {"unary": "Predict", "server_stream": "Generate", "bidi": "Stream"}[spec.shape]
            raise invalid(f"method '{name}' is {spec.shape.replace('_', '-')}; call it with {rpc}")
        return spec

    def _rules(self, spec: MethodSpec) -> tuple[Any, Any]:
        """The method's argument decoder and output encoder, worked out on its first call."""
        rules = self._compiled.get(spec.name)
        if rules is None or rules[0] is not spec:  # (a hot reload brings new specs: new rules)
            rules = self._compiled[spec.name] = (spec, args_decoder(spec), encoder(spec.returns))
        return rules[1], rules[2]

    def _kwargs(self, spec: MethodSpec, request: pb.PredictRequest,
                raw: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self._rules(spec)[0](request.args, raw)
        except InputError as e:
            raise invalid(str(e)) from None

    def call(self, request: pb.PredictRequest, timeout: float | None = None,
             raw: dict[str, Any] | None = None) -> pb.PredictResponse:
        """Serve one unary call. ``raw``: ``bytes`` arguments that came beside the request
        (``codec.encode_request``), by parameter name."""
        spec = self.spec(request.method, UNARY)
        kwargs = self._kwargs(spec, request, raw)
        if self.transformer is not None:
            kwargs = self._preprocess(spec, kwargs)
        if spec.batch:
            out = self._call_batched(spec, kwargs, timeout)
        else:
            fn = getattr(self.instance, spec.name)
            try:
                if spec.is_async:
                    out = self._run_coroutine(fn(**kwargs), timeout)
                else:
                    out = fn(**kwargs)
            except CallFailed:
                raise
            except Exception as e:
                raise self.model_failure(e) from None
        if self.transformer is not None:
            out = self._postprocess(spec, out)
        return self._response(spec, out)

    def _response(self, spec: MethodSpec, out: Any) -> pb.PredictResponse:
        response = pb.PredictResponse()
        if not set_plain(response.output, spec.returns.kind, out):
            response.output.CopyFrom(self._encode_output(spec, out))
        return response

    def call_nowait(self, request: pb.PredictRequest, timeout: float | None,
                    then: Callable[[pb.PredictResponse | CallFailed], None]) -> bool:
        """Serve one unary call of a method with a batcher without waiting for its batch:
        ``then(response or CallFailed)`` runs on the batcher's thread. False (nothing done)
        for any other method; CallFailed for bad input, as ``call`` raises it."""
        spec = self.specs.get(request.method)
        if spec is None or not spec.batch or spec.shape != UNARY or self.transformer is not None:
            return False
        batcher = self.batchers.get(spec.name)
        if batcher is None:
            return False
        kwargs = self._kwargs(spec, request)

        def done(outcome: Any) -> None:
            if isinstance(outcome, BatchTimeout):
                then(CallFailed("DEADLINE_EXCEEDED", "BatchTimeout", str(outcome)))
            elif isinstance(outcome, CallFailed):
                then(outcome)
            elif isinstance(outcome, BaseException):
                then(self.model_failure(outcome))
            else:
                try:
                    then(self._response(spec, outcome))
                except CallFailed as e:
                    then(e)

        try:
            batcher.submit_nowait(kwargs, timeout, done)
        except BatchTimeout as e:
            raise CallFailed("DEADLINE_EXCEEDED", "BatchTimeout", str(e)) from None
        return True

    # ------------------------------------------------------------ the transformer

    def _preprocess(self, spec: MethodSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.transformer.preprocess(spec.name, inputs)
        except Exception as e:
            raise self.transformer_failure("preprocess", spec, e) from None
        if not isinstance(out, dict):
            raise self.transformer_failure("preprocess", spec, None, f"returned {type(out).__name__}; it must "
                                           f"return the dict of {spec.name}()'s arguments by name")
        return out

    def _postprocess(self, spec: MethodSpec, output: Any) -> Any:
        try:
            return self.transformer.postprocess(spec.name, output)
        except Exception as e:
            raise self.transformer_failure("postprocess", spec, e) from None

    def _preprocessed_items(self, spec: MethodSpec, param: str, items: Iterator[Any]) -> Iterator[Any]:
        # Each incoming item of a bidirectional stream, on its own, as {param: item}.
        for item in items:
            yield self._preprocess(spec, {param: item}).get(param)

    def transformer_failure(self, hook: str, spec: MethodSpec, e: BaseException | None,
                            problem: str = "") -> CallFailed:
        """An error of the transformer, named as such (never the model's)."""
        where = f"transformer {self.transformer_cls.__name__}.{hook}() on {spec.name}()"
        if e is None:
            return CallFailed("UNKNOWN", "TransformerError", f"{where} {problem}")
        failure = self.model_failure(e)
        return CallFailed("UNKNOWN", "TransformerError", f"{where} raised {failure.type}: {failure.message}",
                          failure.traceback)

    def _call_batched(self, spec: MethodSpec, kwargs: dict[str, Any], timeout: float | None) -> Any:
        """One caller's result from a batchable method: through its Batcher, or as a batch of one."""
        batcher = self.batchers.get(spec.name)
        if batcher is None:
            outcome = self._run_batch(spec, [kwargs], timeout)[0]
        else:
            try:
                outcome = batcher.submit(kwargs, timeout)
            except BatchTimeout as e:
                raise CallFailed("DEADLINE_EXCEEDED", "BatchTimeout", str(e)) from None
        if isinstance(outcome, CallFailed):
            raise outcome
        return outcome

    def _run_batch(self, spec: MethodSpec, batch: list[dict[str, Any]], timeout: float | None = None) -> list[Any]:
        """Call a batchable method once for ``batch`` (each caller's kwargs); one outcome per caller.

        An outcome is the caller's result or a CallFailed of its own (every caller
        of a batch the model raised for gets the model's error). Never raises.
        """
        n = len(batch)
        columns = {p.name: [kwargs[p.name] for kwargs in batch] for p in spec.params}
        try:
            fn = getattr(self.instance, spec.name)
            out = self._run_coroutine(fn(**columns), timeout) if spec.is_async else fn(**columns)
        except CallFailed as e:
            return [CallFailed(e.code, e.type, e.message, e.traceback) for _ in range(n)]
        except Exception as e:
            failure = self.model_failure(e)
            return [CallFailed(failure.code, failure.type, failure.message, failure.traceback) for _ in range(n)]
        if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__") or not hasattr(out, "__getitem__"):
            problem = f"returned {type(out).__name__}"
        elif len(out) != n:
            problem = f"returned {len(out)} result(s)"
        else:
            return list(out)
        message = (f"{spec.name}() {problem} for a batch of {n} call(s); a batchable method returns a "
                   f"list with one result per input, in order")
        return [CallFailed("UNKNOWN", "BatchSizeError", message) for _ in range(n)]

    def stream(self, request: pb.PredictRequest, items: Iterator[pb.Value] | None = None,
               shape: str | None = None) -> Iterator[pb.Value]:
        """Serve a streaming call: yields encoded outputs.

        ``items`` are the encoded stream inputs of a bidirectional call. Closing
        the returned generator closes the model's generator (its ``finally`` runs).
        """
        spec = self.spec(request.method, shape)
        if spec.shape == UNARY:
            raise invalid(f"method '{spec.name}' is unary; call it with Predict")
        kwargs = self._kwargs(spec, request)
        if self.transformer is not None:
            kwargs = self._preprocess(spec, kwargs)
        sp = spec.stream_param
        if sp is not None:
            decoded = _decoded_items(sp.type, items if items is not None else iter(()), spec.name, sp.name)
            if self.transformer is not None:
                decoded = self._preprocessed_items(spec, sp.name, decoded)
            kwargs[sp.name] = self._async_iter(decoded) if spec.is_async else decoded
        return self._outputs(spec, kwargs)

    def _outputs(self, spec: MethodSpec, kwargs: dict[str, Any]) -> Iterator[pb.Value]:
        try:
            gen = getattr(self.instance, spec.name)(**kwargs)
            if spec.is_async:
                gen = self._sync_iter(gen)
            elif not hasattr(gen, "__next__"):
                gen = iter(gen)
        except Exception as e:
            raise self.model_failure(e) from None
        try:
            while True:
                try:
                    out = next(gen)
                except StopIteration:
                    return
                except CallFailed:
                    raise
                except Exception as e:
                    raise self.model_failure(e) from None
                if self.transformer is not None:
                    out = self._postprocess(spec, out)
                yield self._encode_output(spec, out)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()

    def _encode_output(self, spec: MethodSpec, out: Any) -> pb.Value:
        try:
            return self._rules(spec)[1](out)
        except (Mismatch, InputError) as e:
            message = e.describe(f"{spec.name}() returned a value that") if isinstance(e, Mismatch) else str(e)
            raise CallFailed("INTERNAL", "ReturnTypeError",
                             message.replace("that: ", "that does not fit its annotation: ", 1)) from None

    def model_failure(self, e: BaseException) -> CallFailed:
        """A model exception as a CallFailed, its traceback trimmed to the model's own frames.

        An ``InputError`` the model raises is the caller's mistake (a missing column, a
        wrong shape): it reaches the caller as an InputError (INVALID_ARGUMENT), not as the
        model's failure."""
        if isinstance(e, InputError):
            return invalid(str(e))
        frames = traceback.extract_tb(e.__traceback__)
        root = self.model_dir.resolve()
        own = [f for f in frames if _is_under(f.filename, root)] or frames[-1:]
        text = "".join(traceback.format_list(own))
        return CallFailed("UNKNOWN", type(e).__name__, str(e),
                          f"Traceback (model frames):\n{text}{type(e).__name__}: {e}")

    # ------------------------------------------------------------ async methods

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # One loop thread for all async methods, started only for models that have them.
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="model-asyncio", daemon=True).start()
                self._loop = loop
            return self._loop

    def _run_coroutine(self, coro: Any, timeout: float | None = None) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._event_loop())
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise CallFailed("DEADLINE_EXCEEDED", "TimeoutError", "the call's deadline passed") from None

    def _sync_iter(self, agen: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run_coroutine(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run_coroutine(agen.aclose())

    def _async_iter(self, items: Iterator[Any]) -> Any:
        async def agen():
            loop = asyncio.get_running_loop()
            end = object()
            while True:
                # Reading the next input blocks on the network: do it off the event loop.
                item = await loop.run_in_executor(None, next, items, end)
                if item is end:
                    return
                yield item
        return agen()


def load_folder(model_dir: str | PathLike, *, inference_batcher: dict | bool | None = None,
                transformer: bool = True) -> ModelHost:
    """A host for a model folder: its classes imported and its config read, ``load_model`` not called.

    Args:
        model_dir: the folder (config.yaml, requirements.txt, 1/model.py).
        inference_batcher: a deployment's ``inference_batcher`` settings, e.g.
            ``{"max_batch_size": 8}``; without them each call of a batchable
            method is a batch of one.
        transformer: run the folder's ``1/transformer.py`` (if any) around every call.

    Raises ``ModelDefinitionError`` for a model.py that does not import and
    ``ConfigError`` for an invalid config.yaml or batcher setting.

    Example::

        from jupyter_deploy.model import load_folder

        host = load_folder("models/echo")
        [m.name for m in host.describe().methods]   # ['predict', 'generate']
        host.load()                                  # now the weights
    """
    try:
        batcher = BatcherSettings.from_mapping(inference_batcher)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    host = ModelHost(model_dir, batcher=batcher, transformer=transformer)
    host.config  # noqa: B018 - checked now, so a bad config.yaml is reported before anything loads
    return host


def _rebase(state: dict[str, Any], old_dir: Path, new_dir: Path) -> None:
    """Point the paths the host set into the old folder (``model_path``, a ``checkpoint_path`` inside
    it) to the same place in the new one: the files are the same, and the old folder may go."""
    for key in ("model_path", "checkpoint_path"):
        value = state.get(key)
        if value is None:
            continue
        try:
            rel = Path(value).relative_to(old_dir)
        except (TypeError, ValueError):
            continue
        state[key] = new_dir / rel


def _decoded_items(node: Any, items: Iterator[pb.Value], method: str, param: str) -> Iterator[Any]:
    for i, item in enumerate(items):
        try:
            yield decode_value(node, item, f"{method}() parameter '{param}' item {i}")
        except InputError as e:
            raise invalid(str(e)) from None


def _is_under(filename: str, root: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False
