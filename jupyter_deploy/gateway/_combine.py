"""The gateway's unary calls to one runner, combined into PredictMany RPCs while others are out.

The asyncio twin of ``client._combine`` (its docstring says why and what was measured): the
gateway serves every HTTP caller from one event loop, so its concurrent calls to a replica
are combined the same way. At most ``COMBINE_IN_FLIGHT`` RPCs are out; calls made meanwhile
wait, and each RPC that comes back sends the next batch of those waiting. A call that finds
room and nobody waiting goes as a plain ``Predict``. A call whose HTTP caller went away
before its batch was sent is left out of it.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from .. import _wire
from ..proto import runner_pb2 as pb


class Failed(Exception):
    """A combined call the runner answered with an error (``pb.Error``): as a Predict's status."""

    def __init__(self, error: pb.Error):
        super().__init__(error.message)
        self.code, self.message, self.type = error.code, error.message, error.type


class _Alone(Exception):
    """The runner has no PredictMany (an older one): make the call alone."""


class Combiner:
    """Combines the gateway's concurrent unary calls to one runner (``predict``/``many``: its
    ``Predict`` and ``PredictMany`` multi-callables)."""

    def __init__(self, predict: grpc.aio.UnaryUnaryMultiCallable,
                 many: grpc.aio.UnaryUnaryMultiCallable):
        self._predict, self._many = predict, many
        self._queue: list[tuple[pb.PredictRequest, str, float | None, asyncio.Future]] = []
        self._in_flight = 0
        self._sending: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self.supported = True

    async def call(self, request: pb.PredictRequest, metadata: grpc.aio.Metadata, token: str,
                   timeout: float | None) -> pb.Value:
        """One unary call; its output. Raises ``grpc.aio.AioRpcError`` where its RPC failed and
        ``Failed`` where the runner answered it with an error."""
        if not self.supported or request.ByteSize() > _wire.COMBINE_UNDER:
            return (await self._predict(request, metadata=metadata, timeout=timeout)).output
        if self._in_flight < _wire.COMBINE_IN_FLIGHT and not self._queue:
            self._in_flight += 1
            try:
                return (await self._predict(request, metadata=metadata, timeout=timeout)).output
            finally:
                self._in_flight -= 1
                self._flush()
        waiter = asyncio.get_running_loop().create_future()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._queue.append((request, token, deadline, waiter))
        try:
            return await waiter
        except _Alone:
            return (await self._predict(request, metadata=metadata, timeout=timeout)).output

    def _flush(self) -> None:
        """Send the calls waiting, a batch per RPC, while there is room."""
        while self._queue and self._in_flight < _wire.COMBINE_IN_FLIGHT:
            batch = self._queue[:_wire.COMBINE_MAX_CALLS]
            del self._queue[:_wire.COMBINE_MAX_CALLS]
            self._in_flight += 1
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list) -> None:
        try:
            await self._answer(batch)
        except Exception as e:  # noqa: BLE001 - a bug of ours: its callers fail, they do not hang
            for *_, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(e)
        finally:
            self._in_flight -= 1
            self._flush()

    async def _answer(self, batch: list) -> None:
        """Send ``batch``'s calls whose callers still wait in one PredictMany; settle each."""
        now = time.monotonic()
        calls, waiters, timeouts = [], [], []
        for request, token, deadline, waiter in batch:
            if waiter.done():  # its caller went away
                continue
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                waiter.set_exception(Failed(pb.Error(
                    code="DEADLINE_EXCEEDED", type="TimeoutError",
                    message="the call's deadline passed before it was sent")))
                continue
            calls.append(pb.BatchedCall(request=request, token=token, timeout=left or 0.0))
            waiters.append(waiter)
            timeouts.append(left)
        if not calls:
            return
        try:
            response = await self._many(pb.PredictBatch(calls=calls),
                                        timeout=None if None in timeouts else max(timeouts))
        except grpc.aio.AioRpcError as e:
            failure: Exception = e
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.supported, failure = False, _Alone()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(failure)
            return
        replies = list(response.replies)
        if len(replies) != len(waiters):  # not a runner of ours
            wrong = pb.Error(code="INTERNAL", type="RunnerError",
                             message=f"the runner answered {len(replies)} of {len(waiters)} combined calls")
            replies = [pb.BatchedReply(error=wrong)] * len(waiters)
        for waiter, reply in zip(waiters, replies):
            if waiter.done():
                continue
            if reply.HasField("error"):
                waiter.set_exception(Failed(reply.error))
            else:
                waiter.set_result(reply.response.output)
