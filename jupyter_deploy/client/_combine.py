"""Concurrent unary calls from this process to one runner, combined into PredictMany RPCs.

grpcio's own cost per RPC (call set-up, completion queues, the server's hand-over to a
worker thread) is most of a small call's CPU time, on both sides. A ``Combiner`` lets at
most ``IN_FLIGHT`` RPCs to its runner be out at once; calls made meanwhile wait in a queue,
and the next RPC takes every call waiting (up to ``MAX_CALLS``) in one ``PredictBatch``,
which the runner answers call by call (``runner._service.RunnerService.predict_many``: each
call keeps its own route token, deadline, admission, access record and error).

It has no thread of its own: the caller that finds room sends the RPC (it leads), and a
leader whose RPC came back while calls wait takes the next batch out of the queue and hands
it to the first of them to send. A call that finds nobody waiting goes as a plain
``Predict``, so a lone caller's latency is that of a plain call.

Measured (W1b of ../shared/peers: 16 threads calling back to back, each through its own
``Model``, over gRPC; two interleaved rounds on this 2-core machine): 6,930-7,240 calls/s
combined, 3,790-3,850 with ``JUPYTER_DEPLOY_COMBINE=0`` (one RPC per call), the bare-grpcio
floor 3,180-3,640.
"""

from __future__ import annotations

import itertools
import threading
import time

import grpc

from .. import _wire
from ..proto import runner_pb2 as pb
from ..proto import runner_pb2_grpc
from ._methods import call_error
from ._runner_client import rpc_error

IN_FLIGHT, MAX_CALLS, COMBINE_UNDER = _wire.COMBINE_IN_FLIGHT, _wire.COMBINE_MAX_CALLS, _wire.COMBINE_UNDER


class _Call:
    """A call in the queue: its request, and then its outcome."""

    __slots__ = ("request", "token", "deadline", "done", "lead", "output", "error", "failure", "alone")

    def __init__(self, request: pb.PredictRequest, token: str, deadline: float | None):
        self.request, self.token, self.deadline = request, token, deadline
        self.done = threading.Event()
        self.lead: list[_Call] | None = None  # a batch handed to this call's thread to send
        self.output: pb.Value | None = None
        self.error: pb.Error | None = None         # the runner's answer was an error
        self.failure: grpc.RpcError | None = None  # the RPC itself failed
        self.alone = False                         # the runner has no PredictMany: call it alone

    def outcome(self) -> pb.Value:
        if self.failure is not None:
            raise rpc_error(self.failure) from None
        if self.error is not None:
            err = self.error
            raise call_error(err.code, err.type, err.message, err.traceback)
        return self.output


class Combiner:
    """Sends the unary calls of this process to one runner, combining concurrent ones.

    Example::

        combiner = Combiner([grpc.insecure_channel("127.0.0.1:50051")] * 2)
        value = combiner.call(request, token, timeout=10.0)  # as GrpcTransport.unary
    """

    def __init__(self, channels: list[grpc.Channel]):
        stubs = [runner_pb2_grpc.RunnerStub(channel) for channel in channels]
        self._predict = [stub.Predict for stub in stubs]
        self._many = [stub.PredictMany for stub in stubs]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._in_flight = 0  # batches taken from the queue and not yet answered
        self.supported = True  # False once the runner said it has no PredictMany (an older one)
        self.calls = self.rpcs = 0  # calls sent, and the RPCs that carried them

    def call(self, request: pb.PredictRequest, token: str, timeout: float | None) -> pb.Value:
        """Make one unary call (combined with those waiting); its output, or the error a
        plain Predict would raise."""
        if not self.supported or request.ByteSize() > COMBINE_UNDER:
            return self._alone(request, token, timeout)
        call = _Call(request, token, None if timeout is None else time.monotonic() + timeout)
        with self._lock:
            self._queue.append(call)
            batch = self._take() if self._in_flight < IN_FLIGHT else None
        try:
            if batch is not None:
                self._send(batch)
            call.done.wait()
            while call.lead is not None:  # handed a batch to send (one holding this call)
                batch, call.lead = call.lead, None
                self._send(batch)
        except BaseException:
            self._abandon(call)
            raise
        if call.alone:
            return self._alone(request, token, timeout)
        return call.outcome()

    def _alone(self, request: pb.PredictRequest, token: str, timeout: float | None) -> pb.Value:
        predict = self._predict[next(self._turn) % len(self._predict)]
        try:
            return predict(request, timeout=timeout, metadata=((_wire.ROUTE_TOKEN_KEY, token),)).output
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def _take(self) -> list[_Call] | None:
        """The next batch out of the queue (the lock held), counted in flight; None if none waits."""
        queue = self._queue
        if not queue:
            return None
        batch = queue[:MAX_CALLS]
        del queue[:MAX_CALLS]
        self._in_flight += 1
        self.rpcs += 1
        self.calls += len(batch)
        return batch

    def _send(self, batch: list[_Call]) -> None:
        """Send ``batch`` in one RPC; then hand the next batch, if calls wait, to the thread of
        its first call, and answer this batch's calls."""
        now = time.monotonic()
        live = []
        for call in batch:
            if call.deadline is not None and call.deadline <= now:
                call.error = pb.Error(code="DEADLINE_EXCEEDED", type="TimeoutError",
                                      message="the call's deadline passed before it was sent")
            else:
                live.append(call)
        try:
            if live:
                self._rpc(live, now)
        except BaseException as e:  # interrupted (KeyboardInterrupt): the others fail, not hang
            for call in live:
                if call.output is None and call.error is None and call.failure is None:
                    call.error = pb.Error(code="CANCELLED", type="Cancelled",
                                          message=f"the call's batch was interrupted ({type(e).__name__})")
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
                following = self._take()
                if following is not None:
                    following[0].lead = following  # under the lock: see _abandon
            if following is not None:
                following[0].done.set()
            for call in batch:
                call.done.set()

    def _rpc(self, calls: list[_Call], now: float) -> None:
        turn = next(self._turn)
        timeouts = [None if c.deadline is None else c.deadline - now for c in calls]
        rpc_timeout = None if None in timeouts else max(timeouts)
        if len(calls) == 1:
            call = calls[0]
            predict = self._predict[turn % len(self._predict)]
            try:
                call.output = predict(call.request, timeout=rpc_timeout,
                                      metadata=((_wire.ROUTE_TOKEN_KEY, call.token),)).output
            except grpc.RpcError as e:
                call.failure = e
            return
        batch = pb.PredictBatch(calls=[pb.BatchedCall(request=c.request, token=c.token, timeout=t or 0.0)
                                       for c, t in zip(calls, timeouts)])
        try:
            response = self._many[turn % len(self._many)](batch, timeout=rpc_timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older runner: every call goes alone
                self.supported = False
                for call in calls:
                    call.alone = True
            else:
                for call in calls:
                    call.failure = e
            return
        replies = response.replies
        if len(replies) != len(calls):  # not a runner of ours
            replies = [pb.BatchedReply(error=pb.Error(
                code="INTERNAL", type="RunnerError",
                message=f"the runner answered {len(replies)} of {len(calls)} combined calls"))] * len(calls)
        for call, reply in zip(calls, replies):
            if reply.HasField("error"):
                call.error = reply.error
            else:
                call.output = reply.response.output

    def _abandon(self, call: _Call) -> None:
        """A caller interrupted while it waited: its call leaves the queue, and a batch handed
        to it goes to another of its calls' threads (or, with none, back to the count)."""
        with self._lock:
            if call in self._queue:
                self._queue.remove(call)
            batch, call.lead = call.lead, None
            if batch is None:
                return
            batch = [c for c in batch if c is not call]
            if not batch:
                self._in_flight -= 1
                batch = self._take()
                if batch is None:
                    return
            batch[0].lead = batch
        batch[0].done.set()
