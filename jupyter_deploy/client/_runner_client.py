"""RunnerClient: call one runner process directly over gRPC."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import grpc

from .. import _wire
from ..errors import DeployError, InputError, RunnerError
from ..model.codec import add_raw
from ..model.signature import method_from_proto
from ..proto import runner_pb2 as pb
from ..proto import runner_pb2_grpc
from ._methods import MethodMirror, call_error

_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def rpc_error(e: grpc.RpcError) -> DeployError:
    """A grpc failure as the jupyter_deploy exception a caller should see."""
    code = e.code() if callable(getattr(e, "code", None)) else None
    meta = dict(e.trailing_metadata() or ()) if callable(getattr(e, "trailing_metadata", None)) else {}
    tb = meta.get(_wire.ERROR_TRACEBACK_KEY, b"")
    details = e.details() if callable(getattr(e, "details", None)) else ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""):
        # Far over the runner's limit, grpc refuses the request before the runner reads it.
        return InputError(f"the request is over the runner's size limit ({details})")
    return call_error(code.name if code else "UNKNOWN", meta.get(_wire.ERROR_TYPE_KEY, ""),
                      details or str(code),
                      tb.decode(errors="replace") if isinstance(tb, bytes) else tb)


class RunnerClient(MethodMirror):
    """A client for one runner, whose methods mirror the model's.

    Each ``@ModelClass.method`` of the served model becomes a method of the
    client with the same name, signature and docstring (read from the runner's
    ``Describe``), so ``help(client.predict)`` shows what the model declared.

    Args:
        address: the runner's ``HOST:PORT``.
        timeout: seconds each call may take (None: no deadline).
        connect_timeout: seconds to wait for the runner to answer at all.

    Example::

        from jupyter_deploy import RunnerClient

        with RunnerClient("127.0.0.1:50051") as model:
            model.wait_ready()
            print(model.predict("hello"))
            for chunk in model.generate("hello", n=3):
                print(chunk)
    """

    def __init__(self, address: str, *, timeout: float | None = None, connect_timeout: float = 30.0):
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._stub = runner_pb2_grpc.RunnerStub(self._channel)
        try:
            self.description: pb.ModelDescription = self._stub.Describe(
                pb.DescribeRequest(), timeout=connect_timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            self._channel.close()
            raise RunnerError(f"no runner answers at {address}: {e.details()}",
                              e.code().name) from None
        self._transport = GrpcTransport(self._stub, timeout)
        self._mirror({m.name: method_from_proto(m) for m in self.description.methods}, self._transport)

    def __repr__(self) -> str:
        return (f"<RunnerClient {self.description.model_id} at {self.address}: "
                f"{', '.join(self.specs)}>")

    # ------------------------------------------------------------ state

    def health(self) -> str:
        """The runner's health: ``"SERVING"``, ``"NOT_SERVING"`` or ``"UNREACHABLE"``."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            resp = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5)
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the model is loaded (health SERVING); RunnerError on timeout."""
        deadline = time.monotonic() + timeout
        while (status := self.health()) != "SERVING":
            if time.monotonic() > deadline:
                raise RunnerError(f"runner at {self.address} not serving after {timeout:g} s "
                                  f"(health: {status})", "DEADLINE_EXCEEDED")
            time.sleep(0.05)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RunnerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



class GrpcTransport:
    """Moves encoded calls to a runner over gRPC (see ``_methods.Transport``)."""

    def __init__(self, stub: runner_pb2_grpc.RunnerStub, timeout: float | None,
                 metadata: tuple[tuple[str, str], ...] | None = None, combiner: Any = None):
        self._stub = stub
        self.timeout = timeout
        self.metadata = metadata  # the route token, for runners started by the control plane
        # The process's ``_combine.Combiner`` to this runner: unary calls made while others are
        # out go in one RPC with them (needs a route token, which each combined call carries).
        self.combiner = combiner if metadata else None

    def unary(self, request: pb.PredictRequest, raw: dict[str, bytes] | None = None) -> pb.Value:
        if raw:
            request = add_raw(request, raw)
        if self.combiner is not None:
            return self.combiner.call(request, self.metadata[0][1], self.timeout)
        try:
            return self._stub.Predict(request, timeout=self.timeout, metadata=self.metadata).output
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def server_stream(self, request: pb.PredictRequest) -> Iterator[pb.Value]:
        return _read_stream(self._stub.Generate(request, timeout=self.timeout, metadata=self.metadata))

    def bidi(self, request: pb.PredictRequest, items: Iterator[pb.Value]) -> Iterator[pb.Value]:
        failed: list[BaseException] = []
        call_box: list[Any] = []
        started = threading.Event()

        def requests() -> Iterator[pb.StreamRequest]:
            yield pb.StreamRequest(start=request)
            try:
                for item in items:
                    yield pb.StreamRequest(items=[item])
            except BaseException as e:
                # grpc would only see a broken request stream: keep the reason for the caller.
                failed.append(e)
                started.wait(5)
                if call_box:
                    call_box[0].cancel()

        call = self._stub.Stream(requests(), timeout=self.timeout, metadata=self.metadata)
        call_box.append(call)
        started.set()
        return _read_stream(call, failed)


def _read_stream(call: Any, failed: list[BaseException] | None = None) -> Iterator[pb.Value]:
    """Yield a stream's items; raise its error frame, or a broken-off stream, as an exception."""
    ended = False
    try:
        for resp in call:
            yield from resp.items
            if resp.HasField("error"):
                err = resp.error
                raise call_error(err.code, err.type, err.message, err.traceback)
            if resp.HasField("end"):
                ended = True
                return
    except grpc.RpcError as e:
        if failed:
            raise failed[0] from None
        raise rpc_error(e) from None
    finally:
        if not ended:
            call.cancel()  # the caller stopped early: stop the model's generator too
    if failed:
        raise failed[0]
    raise RunnerError("the stream ended without its end marker (the runner went away?)", "UNAVAILABLE")
