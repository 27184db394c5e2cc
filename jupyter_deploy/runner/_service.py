"""The ``Runner`` gRPC service over a ModelHost, plus the standard health service."""

from __future__ import annotations

import gc
import os
import queue
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2

from .. import _tokens, _wire
from ..errors import ModelDefinitionError
from ..model._host import CallFailed, ModelHost, NotSwappable, invalid
from ..proto import runner_pb2 as pb
from ._pump import Pump
from ._telemetry import CallRecorder, recorded_generate, recorded_stream, recorded_unary

SERVICE = "jupyter_deploy.v1.Runner"
#: Seconds under which a method's calls are answered by the thread that read them (``fast``).
INLINE_UNDER = 0.0002


class _Rejected:
    """What a request deserializer returns for bytes it will not parse."""

    def __init__(self, message: str):
        self.message = message


class Refused(Exception):
    """A request message the runner does not read (``read_message``); says why."""


def read_message(message_type: Any, data: bytes, max_bytes: int, size: int | None = None) -> Any:
    """``data`` parsed as ``message_type``; Refused when it is over ``max_bytes`` or malformed.
    ``size``: the whole request's, where part of it came apart from ``data`` (the ipc plane)."""
    size = len(data) if size is None else size
    if size > max_bytes:
        raise Refused(f"request of {size} bytes is over the runner's limit of "
                      f"{max_bytes} bytes (start the runner with a larger --max-message-mb)")
    try:
        return message_type.FromString(data)
    except Exception:
        raise Refused(f"malformed {message_type.__name__} message ({size} bytes)") from None


def _reader(message_type: Any, max_bytes: int) -> Callable[[bytes], Any]:
    # Parse here rather than in grpc: an oversize or malformed message then gets
    # INVALID_ARGUMENT with a readable reason instead of grpc's generic failures.
    def read(data: bytes) -> Any:
        try:
            return read_message(message_type, data, max_bytes)
        except Refused as e:
            return _Rejected(str(e))
    return read


class RouteTokens:
    """Checks the route token of each call against one deployment's public route key.

    A token that passed is remembered until it expires, so a client reusing its
    token (the usual case) costs a dict look-up per call, not a signature check.
    Tokens that expire more than ``max_ttl`` seconds ahead are refused (``_tokens``).

    Example::

        tokens = RouteTokens(public_key_bytes, "echo")
        tokens.check(context)   # raises CallFailed(UNAUTHENTICATED) saying which check failed
    """

    #: Remembered tokens; past this many the memory starts over (tokens are renewed often).
    MAX_REMEMBERED = 1024

    def __init__(self, key: bytes, deployment_id: str, max_ttl: float = _tokens.MAX_TTL):
        self.key, self.deployment_id, self.max_ttl = _tokens.public_key(key), deployment_id, max_ttl
        self._good: dict[str, tuple[float, str]] = {}  # token -> (expiry in epoch seconds, its op)

    def check(self, context: grpc.ServicerContext, op: str = "") -> None:
        """Pass a call whose token is good for ``op`` ("" for a call into the model, "reload" for a
        hot reload, which only the control plane signs); raise CallFailed(UNAUTHENTICATED) otherwise."""
        token = None
        for key, value in context.invocation_metadata():
            if key == _ROUTE_TOKEN_KEY:
                token = value
                break
        self.check_token(token, op)

    def check_token(self, token: str | None, op: str = "") -> None:
        """``check`` for a token given as such (the ipc plane carries it in its header frame)."""
        expires, granted = self._good.get(token, (None, "")) if token else (None, "")
        now = time.time()
        if expires is None or expires < now:
            try:
                claims = _tokens.verify(self.key, token, deployment_id=self.deployment_id, now=now,
                                        max_ttl=self.max_ttl)
            except _tokens.TokenError as e:
                raise CallFailed("UNAUTHENTICATED", "Unauthenticated", f"call refused: {e}") from None
            granted = str(claims.get("o", ""))
            if len(self._good) >= self.MAX_REMEMBERED:
                self._good.clear()
            self._good[token] = (float(claims["e"]), granted)
        if granted != op:
            raise CallFailed("PERMISSION_DENIED", "PermissionDenied",
                             f"call refused: this route token is good for {granted or 'calls into the model'}, "
                             f"not for {op or 'calls into the model'}")


_ROUTE_TOKEN_KEY = _wire.ROUTE_TOKEN_KEY


class _Slots:
    """A counting semaphore whose acquire and release are C calls (tokens in a SimpleQueue):
    ``threading.BoundedSemaphore`` is Python code around a Condition, several microseconds
    per call on the request path. ``with slots:`` takes one; ``acquire(timeout)`` too."""

    def __init__(self, n: int):
        self._tokens: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(n):
            self._tokens.put(None)
        self._get, self._put = self._tokens.get, self._tokens.put

    def __enter__(self) -> None:
        self._get()

    def __exit__(self, *exc: Any) -> None:
        self._put(None)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """As ``threading.Semaphore.acquire``: False when no slot came free (in ``timeout``)."""
        try:
            self._get(blocking, timeout)
        except queue.Empty:
            return False
        return True

    def release(self) -> None:
        self._put(None)


class RunnerService:
    """Serves Describe, Predict, PredictMany, Generate and Stream for one ModelHost.

    With ``tokens``, every Predict, Generate and Stream call must carry a valid
    route token, and every call of a PredictMany its own; Describe and health never need one.
    """

    def __init__(self, host: ModelHost, max_concurrency: int, tokens: RouteTokens | None = None,
                 recorder: CallRecorder | None = None):
        self.host = host
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._slots = _Slots(max_concurrency)
        self._max_concurrency = max_concurrency
        self._tokens = tokens
        self.recorder = recorder
        self._took: dict[str, float] = {}  # method -> its calls' recent duration (s), averaged
        self._fast: dict[str, bool] = {}   # method -> whether its calls run where they were read
        self._fanout: futures.ThreadPoolExecutor | None = None  # PredictMany's calls of slow methods
        self._fanout_lock = threading.Lock()

    def handlers(self, max_bytes: int) -> dict[str, grpc.RpcMethodHandler]:
        write = pb.StreamResponse.SerializeToString
        predict, generate, stream = self.predict, self.generate, self.stream
        if self.recorder is not None:  # every call leaves an access record (see _telemetry)
            predict, generate, stream = (recorded_unary(self.recorder, predict),
                                         recorded_generate(self.recorder, generate),
                                         recorded_stream(self.recorder, stream))
        return {
            "Describe": grpc.unary_unary_rpc_method_handler(
                self.describe, _reader(pb.DescribeRequest, max_bytes),
                pb.ModelDescription.SerializeToString),
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, _reader(pb.PredictRequest, max_bytes), pb.PredictResponse.SerializeToString),
            # Not wrapped in a recorder: each of its calls is recorded as a Predict of its own.
            "PredictMany": grpc.unary_unary_rpc_method_handler(
                self.predict_many, _reader(pb.PredictBatch, max_bytes), pb.PredictBatchResponse.SerializeToString),
            "Generate": grpc.unary_stream_rpc_method_handler(
                generate, _reader(pb.PredictRequest, max_bytes), write),
            "Stream": grpc.stream_stream_rpc_method_handler(
                stream, _reader(pb.StreamRequest, max_bytes), write),
            "Reload": grpc.unary_unary_rpc_method_handler(
                self.reload, _reader(pb.ReloadRequest, max_bytes), pb.ReloadResponse.SerializeToString),
        }

    def close(self) -> None:
        """Flush the call records (after the server stopped)."""
        if self._fanout is not None:
            self._fanout.shutdown(wait=False)
        if self.recorder is not None:
            self.recorder.close()

    # ------------------------------------------------------------ how a method's calls run

    def batched(self, method: str) -> bool:
        """Whether ``method``'s unary calls can go to its batcher without waiting (``call_nowait``)."""
        host = self.host
        spec = host.specs.get(method)
        return spec is not None and spec.batch and method in host.batchers and host.transformer is None

    def fast(self, method: str) -> bool:
        """Whether ``method``'s calls have been taking under ``INLINE_UNDER`` seconds (``timed``):
        then the thread that read a call runs it, rather than handing it to another (which
        costs more than such a call)."""
        return self._fast.get(method, False)

    def timed(self, request: Any, timeout: float | None, raw: dict[str, bytes] | None = None) -> Any:
        """``host.call``, learning how long the method's calls take (``fast``)."""
        spec = self.host.specs.get(request.method)
        if spec is None or spec.batch or spec.is_async:
            return self.host.call(request, timeout, raw)
        started = time.perf_counter()
        try:
            return self.host.call(request, timeout, raw)
        finally:
            took = time.perf_counter() - started
            avg = self._took.get(request.method)
            avg = took if avg is None else 0.8 * avg + 0.2 * took
            self._took[request.method] = avg
            # A single slow call makes the method slow at once; fast again only on average.
            self._fast[request.method] = avg < INLINE_UNDER and took < 4 * INLINE_UNDER

    # ------------------------------------------------------------ handlers

    def describe(self, request: Any, context: grpc.ServicerContext) -> pb.ModelDescription:
        return self.host.describe()

    def predict(self, request: Any, context: grpc.ServicerContext) -> pb.PredictResponse:
        try:
            self._authorize(context)
            time_left = self._admit(request, context)
            with self._slots:
                return self.host.call(request, time_left)
        except CallFailed as e:
            _abort(context, e)

    def predict_many(self, batch: Any, context: grpc.ServicerContext) -> pb.PredictBatchResponse:
        """Serve a PredictBatch: each call checked (its own token and deadline), admitted, run and
        recorded as a Predict of its own, and answered in its own reply.

        Calls of a method with a batcher go to it together, without waiting for each other;
        calls of a ``fast`` method run on this thread one after the other; the others at once,
        on threads of their own, each taking a slot as a Predict does.
        """
        if isinstance(batch, _Rejected):
            _abort(context, invalid(batch.message))
        received = time.monotonic()
        rpc_left = _time_left(context.time_remaining())
        calls = batch.calls
        replies: list[Any] = [None] * len(calls)
        pending = _Latch()
        slow = []
        def answer(i: int) -> Callable[[Any], None]:
            def then(result: Any) -> None:
                replies[i] = _reply(result)
                pending.done()
            return then

        for i, call in enumerate(calls):
            method = call.request.method
            if self.batched(method):
                pending.add()
                self.submit(call.request, call.token, call.timeout, received, answer(i))
            elif self.fast(method):
                replies[i] = self._one(call, received)
            else:
                slow.append(i)
        if slow:
            pool = self._pool()
            waits = [pool.submit(self._one, calls[i], received) for i in slow[1:]]
            replies[slow[0]] = self._one(calls[slow[0]], received)
            for i, wait in zip(slow[1:], waits):
                replies[i] = wait.result()
        if not pending.wait(rpc_left):
            late = CallFailed("DEADLINE_EXCEEDED", "TimeoutError", "no answer from the batcher in time").to_proto()
            replies = [reply or pb.BatchedReply(error=late) for reply in replies]
        return pb.PredictBatchResponse(replies=replies)

    def _pool(self) -> futures.ThreadPoolExecutor:
        with self._fanout_lock:
            if self._fanout is None:
                self._fanout = futures.ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="runner-many")
            return self._fanout

    def admitted(self, token: str, timeout: float, received: float) -> float | None:
        """Check a call's route token and admit it (``admit``); its seconds left. ``timeout``: its
        seconds as sent (0: none), counted from ``received``."""
        if self._tokens is not None:
            self._tokens.check_token(token or None)
        left = timeout - (time.monotonic() - received) if timeout > 0 else None
        self.admit(left)
        return left

    def _one(self, call: Any, received: float) -> pb.BatchedReply:
        """One call of a PredictBatch, run on this thread."""
        recorder = self.recorder
        if recorder is not None:
            started, wall = recorder.begin()
        response = error = None
        try:
            left = self.admitted(call.token, call.timeout, received)
            with self._slots:
                response = self.timed(call.request, left)
            status = "OK"
        except Exception as e:  # noqa: BLE001 - a bug of ours is the caller's UNKNOWN, as for a Predict
            failed = e if isinstance(e, CallFailed) else CallFailed("UNKNOWN", type(e).__name__, f"the runner failed: {e}")
            status, error = failed.code, failed.record()
        if recorder is not None:
            recorder.end(started, wall, "unary", call.request, response, status, error,
                         ((_ROUTE_TOKEN_KEY, call.token),))
        return _reply(response if error is None else failed)

    def submit(self, request: Any, token: str, timeout: float, received: float,
               reply: Callable[[Any], None], wait: bool = True) -> bool:
        """Hand a unary call of a ``batched`` method to its batcher without waiting for the batch
        (either plane): its token checked, it admitted, a slot held until it is answered, and it
        recorded as a Predict. ``reply(response or CallFailed)`` runs on the batcher's thread (on
        this one for a call refused). ``timeout``: its seconds as sent (0: none), counted from
        ``received``. ``wait=False``: no waiting for a slot; False (nothing done) when none is free."""
        if not wait and not self._slots.acquire(blocking=False):
            return False
        held = [not wait]
        recorder = self.recorder
        started, wall = recorder.begin() if recorder is not None else (0.0, 0.0)

        def then(result: Any) -> None:
            if held[0]:
                self._slots.release()
            if recorder is not None:
                metadata = ((_ROUTE_TOKEN_KEY, token),)
                if isinstance(result, CallFailed):
                    recorder.end(started, wall, "unary", request, None, result.code, result.record(), metadata)
                else:
                    recorder.end(started, wall, "unary", request, result, "OK", None, metadata)
            reply(result)

        try:
            left = self.admitted(token, timeout, received)
            if not held[0]:
                held[0] = self._slots.acquire(timeout=left)
                if not held[0]:
                    raise CallFailed("DEADLINE_EXCEEDED", "TimeoutError", "the call's deadline passed waiting for a slot")
            if not self.host.call_nowait(request, left, then):
                raise CallFailed("INTERNAL", "RunnerError", f"method {request.method!r} has no batcher")
        except CallFailed as e:
            then(e)
        return True

    def generate(self, request: Any, context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        try:
            self._authorize(context)
            self._admit(request, context)
            with self._slots:
                source = self.host.stream(request, shape="server_stream")
                yield from _pumped(source, context)
        except CallFailed as e:
            _abort(context, e)

    def stream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        try:
            self._authorize(context)  # before reading anything the caller sent
            first = next(requests, None)
            if first is None:
                raise invalid("a Stream call must start with a message naming the method")
            self._admit(first, context)
            if not first.HasField("start"):
                raise invalid("the first message of a Stream call must set 'start' (the method and its arguments)")
            with self._slots:
                source = self.host.stream(first.start, _items(first, requests), shape="bidi")
                yield from _pumped(source, context)
        except CallFailed as e:
            _abort(context, e)

    def reload(self, request: Any, context: grpc.ServicerContext) -> pb.ReloadResponse:
        """Hot reload (the control plane only): swap in the new version's code, keeping the loaded state.

        A refusal or a failure (the new code does not define, its test() raised) is answered in
        the response's ``error``, and the old code keeps serving.
        """
        try:
            if self._tokens is None:
                # Without a key anyone who reaches the runner could swap its code: nobody may.
                raise CallFailed("PERMISSION_DENIED", "PermissionDenied",
                                 "this runner has no verification key, so it takes no reload")
            self._tokens.check(context, op="reload")
            if isinstance(request, _Rejected):
                raise invalid(request.message)
            if not self.ready.is_set() or self.stopping.is_set():
                raise CallFailed("FAILED_PRECONDITION", "NotServing",
                                 "the runner is not serving (loading or stopping); nothing to reload")
        except CallFailed as e:
            _abort(context, e)
        say = lambda msg: print(f"jupyter_deploy runner: {msg}", flush=True)  # noqa: E731
        try:
            changed = self.host.reload(Path(request.model_path), run_test=request.run_test)
        except NotSwappable as e:
            error = CallFailed("FAILED_PRECONDITION", "NotSwappable", str(e))
        except ModelDefinitionError as e:
            error = CallFailed("FAILED_PRECONDITION", "ModelDefinitionError", str(e))
        except Exception as e:  # noqa: BLE001 - the new test() raised: the model's own error
            error = self.host.model_failure(e)
        else:
            # The runner froze what it loaded (gc.freeze, see __main__): the old code's cycles are
            # among it, and would never be collected. Collect them, then freeze what is left.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            os.environ["MODEL_VERSION"] = request.version_id
            if self.recorder is not None:
                self.recorder.version = request.version_id
            say(f"hot reload: now serving version {request.version_id} ({changed}; loaded state kept)")
            return pb.ReloadResponse(changed=changed)
        say(f"hot reload to version {request.version_id} refused, still serving the previous code: "
            f"{error.type}: {error.message}")
        return pb.ReloadResponse(error=error.to_proto())

    def _authorize(self, context: grpc.ServicerContext) -> None:
        if self._tokens is not None:
            self._tokens.check(context)

    def drain(self, timeout: float) -> bool:
        """Refuse new calls (UNAVAILABLE: clients resolve again) and wait for those in flight.

        Returns whether every call in flight finished within ``timeout``.
        """
        self.stopping.set()
        deadline = time.monotonic() + timeout
        taken = 0
        # Holding every slot means no call is inside the model any more.
        while taken < self._max_concurrency and self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            taken += 1
        for _ in range(taken):
            self._slots.release()
        return taken == self._max_concurrency

    def _admit(self, request: Any, context: grpc.ServicerContext) -> float | None:
        """Refuse a call the runner cannot serve now; the seconds it has left (None: no deadline)."""
        if isinstance(request, _Rejected):
            raise invalid(request.message)
        remaining = context.time_remaining()
        self.admit(remaining)
        return _time_left(remaining)

    def admit(self, remaining: float | None) -> None:
        """Refuse a call, over either plane, that the runner cannot serve now: loading, stopping,
        or ``remaining`` (its seconds left; None: no deadline) already gone."""
        if not self.ready.is_set():
            raise CallFailed("UNAVAILABLE", "NotReady", "the model is still loading; retry when health says SERVING")
        if self.stopping.is_set():
            raise CallFailed("UNAVAILABLE", "Stopping", "the runner is stopping; resolve the route again")
        if remaining is not None and remaining <= 0:
            raise CallFailed("DEADLINE_EXCEEDED", "TimeoutError", "the call's deadline passed before it started")


def _reply(result: Any) -> pb.BatchedReply:
    """A PredictBatch's reply to one call: its response, or its CallFailed."""
    if isinstance(result, CallFailed):
        return pb.BatchedReply(error=result.to_proto())
    return pb.BatchedReply(response=result)


class _Latch:
    """Counts a PredictBatch's calls handed to a batcher; ``wait`` until each answered."""

    __slots__ = ("_lock", "_count", "_zero")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._zero = threading.Event()
        self._zero.set()

    def add(self) -> None:
        with self._lock:
            self._count += 1
            self._zero.clear()

    def done(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                self._zero.set()

    def wait(self, timeout: float | None) -> bool:
        return self._zero.wait(timeout)


def _time_left(remaining: float | None) -> float | None:
    # grpc reports a call without a deadline as one that ends centuries from now,
    # which overflows a thread wait: treat it as no deadline.
    return remaining if remaining is not None and remaining < _NO_DEADLINE else None


_NO_DEADLINE = 10 * 365 * 86400


def _items(first: pb.StreamRequest, rest: Iterator[Any]) -> Iterator[pb.Value]:
    yield from first.items
    for msg in rest:
        if isinstance(msg, _Rejected):
            raise invalid(msg.message)
        yield from msg.items


def _pumped(source: Iterator[pb.Value], context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
    """Send a stream's items as they come, waiting ones together, then its end or error.

    The first item is made and sent on this thread: handed over by a producer thread it
    waited for that thread to give up the GIL, one or two switch intervals (5 ms) behind a
    fast generator's next items. From the second on a Pump makes them, so they pile up
    (and go out together) while one is sent.
    """
    count = 0
    pump: Pump | None = None
    try:
        first = next(source, None)
        if first is not None:
            count = 1
            yield pb.StreamResponse(items=[first])
            pump = Pump(source)  # the source is the pump's from here: its thread closes it
            # Cancelled, deadline passed, or connection lost; grpc refuses the callback of a call
            # that already ended (while its first item went out): stop at once then.
            if not context.add_callback(pump.stop):
                pump.stop()
            for batch in pump.batches():
                count += len(batch)
                yield pb.StreamResponse(items=batch)
    except CallFailed as e:
        yield pb.StreamResponse(error=e.to_proto())
        return
    finally:
        if pump is not None:
            pump.stop()
        else:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # cut off before the pump started (or it ended): the model's finally runs now
    if context.is_active():
        yield pb.StreamResponse(end=pb.End(count=count))


def _abort(context: grpc.ServicerContext, e: CallFailed) -> None:
    metadata = [(_wire.ERROR_TYPE_KEY, e.type)]
    if e.traceback:
        metadata.append((_wire.ERROR_TRACEBACK_KEY, e.traceback.encode()))
    context.set_trailing_metadata(metadata)
    context.abort(getattr(grpc.StatusCode, e.code), e.message)


def _stream_param(host: ModelHost, method: str) -> str:
    spec = host.specs.get(method)
    param = spec.stream_param if spec is not None else None
    return param.name if param is not None else "items"


HEALTH_SERVICE = "grpc.health.v1.Health"


def _health_handlers(servicer: health.HealthServicer) -> dict[str, grpc.RpcMethodHandler]:
    """grpc.health.v1 over ``servicer``, reading requests with ``_reader``: grpc's own deserializer
    answers bytes that are no HealthCheckRequest with INTERNAL, these with INVALID_ARGUMENT."""
    read = _reader(health_pb2.HealthCheckRequest, 1 << 16)
    write = health_pb2.HealthCheckResponse.SerializeToString

    def check(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Rejected):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        response = servicer.Check(request, context)
        if context.code() == grpc.StatusCode.NOT_FOUND:  # the servicer says so without a word
            context.abort(grpc.StatusCode.NOT_FOUND, f"no health status for service {request.service[:80]!r}; "
                                                     f"ask for '' (the runner) or {SERVICE!r}")
        return response

    def watch(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if isinstance(request, _Rejected):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        yield from servicer.Watch(request, context)

    return {"Check": grpc.unary_unary_rpc_method_handler(check, read, write),
            "Watch": grpc.unary_stream_rpc_method_handler(watch, read, write)}


def make_server(host: ModelHost, address: str, *, max_concurrency: int = 32,
                max_message_bytes: int = 64 << 20, auth: tuple[bytes, str] | None = None,
                ) -> tuple[grpc.Server, RunnerService, health.HealthServicer, int]:
    """A started-not-yet server bound to ``address``; returns it, the service, health and the port.

    ``auth`` is ``(public_key_bytes, deployment_id)``: calls then need a route token.
    """
    recorder = CallRecorder.from_environment(stream_param=lambda m: _stream_param(host, m),
                                             capacity=max_concurrency)
    service = RunnerService(host, max_concurrency, RouteTokens(*auth) if auth else None, recorder)
    server = grpc.server(
        # Headroom beyond the model's slots so health checks and Describe never queue behind calls.
        futures.ThreadPoolExecutor(max_workers=max_concurrency + 4, thread_name_prefix="runner"),
        options=[
            # grpc's own cap only bounds memory: it sits well above ours so that an oversize
            # request reaches _reader and gets its readable INVALID_ARGUMENT, not
            # RESOURCE_EXHAUSTED (twice a small limit is reached by ordinary requests).
            ("grpc.max_receive_message_length", max(2 * max_message_bytes, max_message_bytes + (64 << 20))),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_registered_method_handlers(SERVICE, service.handlers(max_message_bytes))
    health_servicer = health.HealthServicer()
    server.add_registered_method_handlers(HEALTH_SERVICE, _health_handlers(health_servicer))
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address} (is the port in use?)")
    return server, service, health_servicer, port
