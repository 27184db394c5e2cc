"""The runner's same-host data plane: model calls over a zmq ROUTER on an ``ipc://`` socket.

A caller on the runner's host skips gRPC's per-call machinery (most of a call's CPU time):
it sends ``[header and token, body]`` to this socket and gets ``[call id, kind, body]`` back,
where the bodies are the same protobuf messages the gRPC service reads and writes.

The header frame is ``struct("<cQd")`` = kind (``u`` unary Predict, ``s`` server-stream Generate,
``c`` cancel a stream, ``k`` credit a stream, ``p`` ping), call id, timeout in seconds (0: none),
followed by the route token (one frame less to send per call). A unary call whose body is small
(and has no bytes frames) may come as one frame instead, kind ``j``: the header, then
``struct("<H")`` the token's length, the token and the body. A unary call may carry large
``bytes`` arguments outside its PredictRequest: ``[header and token, body, names, value, ...]``,
where ``names`` is the arguments' names joined by NUL and each value one frame
(``codec.encode_request``): they skip the protobuf's copies, and count as in the request for
its size limit and records. A reply is ``[call id, kind, body]`` or, for a body under
``JOIN_UNDER`` bytes, the three joined in one frame (the client reads both).
Reply kinds:
``r`` a PredictResponse, ``i`` a StreamResponse (items, then its end or error), ``e`` an
Error (the call failed before it started or, for a unary call, in the model), ``p`` pong.

Streams are flow-controlled, as gRPC's are: a stream may have ``WINDOW`` item messages, and
``WINDOW_BYTES`` bytes of them, sent and not yet acknowledged; then its sender waits (on its
worker thread, the slot still held, its deadline still running) and the model's generator
waits behind its ``Pump``'s bounded queue. The caller acknowledges what it consumed with
``[header k, struct("<I") count of item messages]``, every half window, so a fast stream costs
a credit per ``WINDOW // 2`` messages, not one per message. Neither cancel nor credit carries a
token: they act only on the streams of the connection they come from. While a stream waits on
its window it sends its caller a ``p`` of call id 0 (which no call has, so callers drop it)
every ``PROBE_EVERY`` seconds: a caller that went away without a cancel (killed) fails that
send, which stops its streams.

The calls go to the same ModelHost as the gRPC service's, with the same admission (ready,
stopping, the same slots, so a drain covers both planes), the same route-token check and
the same access records. Bidirectional calls stay on gRPC.

The socket is a Linux abstract one (``ipc://@jupyter_deploy-<random>``): no file to own or
clean up (runners of a sandbox run as other OS users); whoever reaches it still needs a
route token, as for the TCP port. Elsewhere there is no ipc plane (None).

One loop thread owns the ROUTER. Model calls run on worker threads (a slow model must not
hold up other calls, and a batched method's calls must reach its batcher together); their
replies come back to the loop over an inproc PULL socket, the ROUTER's only writer being the loop.
Replies of batched calls go into an outbox instead, which wakes the loop once per batch.
"""

from __future__ import annotations

import collections
import os
import queue
import struct
import sys
import threading
import time
from typing import Any

import zmq

from .. import _wire
from ..model._host import CallFailed, invalid
from ..model.codec import add_raw, raw_size
from ..proto import runner_pb2 as pb
from ._pump import Pump
from ._service import Refused, read_message

HEADER = struct.Struct("<cQd")
_POLLIN, _EVENTS, _RCVMORE = int(zmq.POLLIN), int(zmq.EVENTS), int(zmq.RCVMORE)
_MORE, _NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK), int(zmq.NOBLOCK)
#: Reply bodies up to this many bytes share a frame with the call id and kind (copying them
#: costs less than a frame more).
JOIN_UNDER = 16 << 10
CALL_ID = struct.Struct("<Q")
UNARY, STREAM, CANCEL, PING = b"u", b"s", b"c", b"p"
_END = object()
CREDIT = b"k"
COUNT = struct.Struct("<I")
JOINED, TOKEN_LEN = b"j", struct.Struct("<H")
#: Item messages a stream may have sent and not acknowledged (``client._ipc`` acks every half).
#: Messages, not items: a message carries every item that waited (a batch), so a window of
#: items would cut a fast stream's batches short. With a byte cap beside it, so messages of up
#: to ``Pump``'s 1 MiB each (or one larger item) do not pile up by the 32.
WINDOW = 32
#: Bytes of those messages (one more message always goes out, however large, once under it).
WINDOW_BYTES = 4 << 20
#: Seconds between the checks, while a stream waits on its window, that its caller is still there.
PROBE_EVERY = 1.0
_NO_CALL = CALL_ID.pack(0)


class _Window:
    """A stream's credit window, and its stop: a cancel before its Pump exists is remembered.

    The worker sending the stream calls ``sent`` and ``room``; the loop thread calls ``ack``
    (a credit) and ``stop`` (a cancel, or the caller gone)."""

    __slots__ = ("_cond", "_sizes", "_bytes", "stopped", "_pump")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._sizes: collections.deque[int] = collections.deque()  # unacknowledged messages' sizes
        self._bytes = 0
        self.stopped = False
        self._pump: Pump | None = None

    def attach(self, pump: Pump) -> None:
        with self._cond:
            self._pump = pump
            stopped = self.stopped
        if stopped:
            pump.stop()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            pump = self._pump
            self._cond.notify_all()
        if pump is not None:
            pump.stop()

    def sent(self, size: int) -> None:
        """Count a message about to go out (before it does: its credit may come back at once)."""
        with self._cond:
            self._sizes.append(size)
            self._bytes += size

    def ack(self, count: int) -> None:
        """The caller consumed the ``count`` oldest messages not yet acknowledged."""
        with self._cond:
            sizes = self._sizes
            for _ in range(min(count, len(sizes))):
                self._bytes -= sizes.popleft()
            self._cond.notify_all()

    def room(self, deadline: float | None, probe: Any) -> bool:
        """Wait until another message may go out: False once stopped or past ``deadline``.
        ``probe()`` every ``PROBE_EVERY`` seconds of waiting sees whether the caller is there."""
        with self._cond:
            while (len(self._sizes) >= WINDOW or self._bytes >= WINDOW_BYTES) and not self.stopped:
                wait = PROBE_EVERY
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return False
                if not self._cond.wait(wait):
                    probe()  # its failure (in the loop thread) stops this window
            return not self.stopped


RESPONSE, ITEMS, ERROR, PONG = b"r", b"i", b"e", b"p"


def _raw(frames: list[bytes]) -> dict[str, bytes] | None:
    """A unary call's bytes arguments sent apart (``[names, value, ...]`` after its body), by
    name; None when the frames do not say that."""
    names = frames[3].split(b"\0")
    if len(names) != len(frames) - 4:
        return None
    try:
        return {name.decode(): value for name, value in zip(names, frames[4:])}
    except UnicodeDecodeError:
        return None


def available() -> bool:
    """Whether this platform has abstract ipc sockets (Linux) in its zmq build."""
    return sys.platform.startswith("linux") and zmq.has("ipc")


class IpcServer:
    """Serves ``service``'s model calls (a RunnerService) on an abstract ipc socket.

    Example::

        ipc = IpcServer(service, max_bytes=64 << 20)
        ipc.start()
        print(ipc.endpoint)    # ipc://@jupyter_deploy-3f9c...
        ...
        ipc.stop()
    """

    def __init__(self, service: Any, max_bytes: int, endpoint: str | None = None):
        self.service = service
        self.max_bytes = max_bytes
        self.endpoint = endpoint or f"ipc://@jupyter_deploy-{os.urandom(12).hex()}"
        self._ctx = zmq.Context.instance()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        # A reply to a caller that went away raises instead of vanishing: its stream is stopped.
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, 0)
        self._router.setsockopt(zmq.RCVHWM, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, max(2 * max_bytes, max_bytes + (64 << 20)))
        self._router.bind(self.endpoint)
        self._replies_at = f"inproc://jupyter_deploy-replies-{id(self):x}"
        self._replies = self._ctx.socket(zmq.PULL)
        self._replies.setsockopt(zmq.LINGER, 0)
        self._replies.bind(self._replies_at)
        self._local = threading.local()
        # Replies of batched calls, sent by the loop: a batch's replies wake it once, not once each.
        self._outbox: list[list] = []
        self._outbox_lock = threading.Lock()
        self._outbox_woken = False
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0    # workers waiting for a task
        self._queued = 0  # tasks no worker took yet
        self._workers = 0
        self._max_workers = max(1, service._max_concurrency)
        self._workers_lock = threading.Lock()
        self._streams: dict[tuple[bytes, bytes], _Window] = {}  # (caller, call id) -> its window
        self._streams_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ipc-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (after the calls in flight drained): the loop ends, the sockets close."""
        self._stop.set()
        self._thread.join(2.0)
        for _ in range(self._workers):
            self._tasks.put(None)

    # ------------------------------------------------------------ the loop thread

    def _loop(self) -> None:
        router, replies = self._router, self._replies
        try:
            while not self._stop.is_set():
                try:
                    self._turn(router, replies)
                except Exception as e:  # noqa: BLE001 - a bug of ours must not end the plane (callers would wait)
                    print(f"jupyter_deploy runner: ipc loop: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            router.close(0)
            replies.close(0)

    def _turn(self, router: Any, replies: Any) -> None:
        """One wake of the loop: every reply waiting goes out, then the calls waiting come in."""
        # zmq's int-level calls: pyzmq's sugar (enum flags, a Poller per call) costs more than the call.
        zmq.zmq_poll([(router, _POLLIN), (replies, _POLLIN)], 200)
        # EVENTS says whether more wait, without the exception an empty NOBLOCK read raises.
        while replies.get(_EVENTS) & _POLLIN:
            frames = replies.recv_multipart(copy=False)
            if len(frames) == 1:
                self._send_outbox()
            else:
                self._forward(frames)
        while router.get(_EVENTS) & _POLLIN:
            frames = [router.recv()]
            while router.get(_RCVMORE):
                frames.append(router.recv())
            try:
                self._take(frames)
            except Exception as e:  # noqa: BLE001 - one bad call must not hold up the others
                print(f"jupyter_deploy runner: ipc call failed: {type(e).__name__}: {e}",
                      file=sys.stderr, flush=True)
                self._fail(frames, e)

    def _send_outbox(self) -> None:
        with self._outbox_lock:
            out, self._outbox, self._outbox_woken = self._outbox, [], False
        for frames in out:
            self._reply(frames)

    def _post(self, frames: list) -> None:
        """Have the loop send ``frames`` (from any thread): into the outbox, waking the loop only
        when it was not woken already (a batch's replies go out on one wake)."""
        with self._outbox_lock:
            self._outbox.append(frames)
            if self._outbox_woken:
                return
            self._outbox_woken = True
        self._push().send(b"")

    def _fail(self, frames: list[bytes], e: Exception) -> None:
        """Answer a call a bug of ours dropped with gRPC's UNKNOWN, so its caller does not wait."""
        if len(frames) >= 2 and len(frames[1]) >= HEADER.size:
            failed = CallFailed("UNKNOWN", type(e).__name__, f"the runner failed: {e}")
            cid = CALL_ID.pack(HEADER.unpack_from(frames[1])[1])
            self._reply([frames[0], cid, ERROR, failed.to_proto().SerializeToString()])

    def _reply(self, frames: list) -> None:
        """Send ``[caller, call id, kind, body]``; a small body goes in one frame with the call id
        and kind (each frame is a zmq call that lets go of the GIL and takes it back)."""
        caller, cid, kind, body = frames
        send = self._router.send
        try:
            # (A caller gone fails the first frame, EHOSTUNREACH: none of the message goes out.)
            send(caller, _MORE)
            if len(body) <= JOIN_UNDER:
                send(cid + kind + body, _NOBLOCK)
            else:
                send(cid + kind, _MORE)
                send(body, _NOBLOCK, copy=False)
        except zmq.ZMQError:  # the caller went away meanwhile: nobody to answer
            pass

    def _forward(self, frames: list) -> None:
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # the caller is gone (EHOSTUNREACH): stop its streams, if any
            caller = bytes(frames[0].buffer)
            with self._streams_lock:
                gone = [self._streams.pop(key) for key in [key for key in self._streams if key[0] == caller]]
            for window in gone:
                window.stop()

    def _take(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or len(frames[1]) < HEADER.size:
            return  # not ours: nothing to answer to
        caller, header = frames[0], frames[1]
        kind, call_id, timeout = HEADER.unpack_from(header)
        if kind == JOINED and len(frames) == 2 and len(header) >= HEADER.size + TOKEN_LEN.size:
            # [header, token length, token, body] in one frame: read as the two frames they stand for.
            start = HEADER.size + TOKEN_LEN.size
            end = start + TOKEN_LEN.unpack_from(header, HEADER.size)[0]
            kind, token, frames = UNARY, header[start:end], [caller, header, header[end:]]
        else:
            token = header[HEADER.size:]
        cid = CALL_ID.pack(call_id)
        if kind == PING:
            self._reply([caller, cid, PONG, b""])
            return
        if kind == CREDIT:
            with self._streams_lock:
                window = self._streams.get((caller, cid))
            if window is not None and len(frames) == 3 and len(frames[2]) == COUNT.size:
                window.ack(COUNT.unpack(frames[2])[0])
            return
        if kind == CANCEL:
            with self._streams_lock:
                window = self._streams.pop((caller, cid), None)
            if window is not None:
                window.stop()
            return
        raw = _raw(frames) if kind == UNARY and len(frames) > 3 else None
        if (len(frames) != 3 and raw is None) or kind not in (UNARY, STREAM):
            err = invalid("malformed ipc call: expected [header and token, body] frames, then "
                          "[names, value, ...] for a unary call's bytes arguments").to_proto()
            self._reply([caller, cid, ERROR, err.SerializeToString()])
            return
        received = time.monotonic()
        body = frames[2]
        if kind == UNARY and len(body) + (raw_size(raw) if raw else 0) <= self.max_bytes:
            try:
                request = pb.PredictRequest.FromString(body)
            except Exception:
                request = None  # the worker's check says what is wrong with it
            service = self.service
            if request is not None:
                if service.batched(request.method) and raw is None:
                    if self._submit(caller, cid, timeout, token, request, received):
                        return
                elif service.fast(request.method) and service._slots.acquire(blocking=False):
                    try:
                        reply = self._unary(caller, cid, timeout, token, body, received, raw, request)
                    finally:
                        service._slots.release()
                    self._reply(reply)
                    return
        if kind == UNARY:
            self._tasks.put((kind, caller, cid, timeout, token, body, received, raw))
        else:
            self._tasks.put((kind, caller, cid, timeout, token, body, received))
        with self._workers_lock:
            self._queued += 1
            # Every waiting task needs a waiting worker, or calls that could run together (a
            # batch) would queue behind each other; past the slots they wait, as gRPC's do.
            if self._queued <= self._idle or self._workers >= self._max_workers:
                return
            self._workers += 1
        threading.Thread(target=self._work, name="ipc-worker", daemon=True).start()

    def _submit(self, caller: bytes, cid: bytes, timeout: float, token: bytes, request: Any,
                received: float) -> bool:
        """Hand a call of a batched method to its batcher without waiting for the batch: the
        loop goes on taking calls (a batch fills from calls that all went through this one
        thread), and the reply goes out from the batcher's thread. False when no slot is free
        (the workers then take it, waiting for one)."""
        def reply(result: Any) -> None:
            if isinstance(result, CallFailed):
                self._post([caller, cid, ERROR, result.to_proto().SerializeToString()])
            else:
                self._post([caller, cid, RESPONSE, result.SerializeToString()])

        return self.service.submit(request, token.decode(errors="replace"), timeout, received, reply, wait=False)

    def _push(self) -> Any:
        """This thread's PUSH socket to the loop (replies from workers and batchers)."""
        push = getattr(self._local, "push", None)
        if push is None:
            push = self._local.push = self._ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDHWM, 0)
            push.connect(self._replies_at)
        return push

    # ------------------------------------------------------------ worker threads

    def _work(self) -> None:
        push = self._push()
        send = push.send_multipart
        tasks = self._tasks
        try:
            lock = self._workers_lock
            while True:
                with lock:
                    self._idle += 1
                task = tasks.get()
                if task is None:
                    return
                with lock:
                    self._idle -= 1
                    self._queued -= 1
                if task[0] == UNARY:
                    send(self._unary(*task[1:]), copy=False)
                else:
                    self._generate(send, *task[1:])
        finally:
            push.close(0)

    def _check(self, token: bytes, body: bytes, timeout: float, received: float, request: Any = None,
               size: int | None = None) -> Any:
        """The request, once the call may go to the model; CallFailed otherwise (as gRPC's handlers).
        ``size``: the request's, where its bytes arguments came apart from ``body``."""
        service = self.service
        tokens = service._tokens
        if tokens is not None:
            tokens.check_token(token.decode(errors="replace") or None)
        if request is None:
            try:
                request = read_message(pb.PredictRequest, body, self.max_bytes, size)
            except Refused as e:
                raise invalid(str(e)) from None
        service.admit(timeout - (time.monotonic() - received) if timeout > 0 else None)
        return request

    def _unary(self, caller: bytes, cid: bytes, timeout: float, token: bytes, body: bytes,
               received: float, raw: dict[str, bytes] | None = None, parsed: Any = None) -> list:
        """A unary call's reply frames. ``raw``: its bytes arguments that came apart from ``body``;
        ``parsed``: the request, read by the loop (a ``fast`` method), which holds a slot."""
        recorder = self.service.recorder
        if recorder is not None:
            started, wall = recorder.begin()
        size = len(body) + raw_size(raw) if raw else None
        request = None
        response = status = error = None
        try:
            request = self._check(token, body, timeout, received, parsed, size)
            left = timeout - (time.monotonic() - received) if timeout > 0 else None
            if parsed is not None:
                response = self.service.timed(request, left, raw)
            else:
                with self.service._slots:
                    response = self.service.timed(request, left, raw)
            status, reply = "OK", [caller, cid, RESPONSE, response.SerializeToString()]
        except CallFailed as e:
            status, error = e.code, e.record()
            reply = [caller, cid, ERROR, e.to_proto().SerializeToString()]
        except Exception as e:  # noqa: BLE001 - a bug of ours: the caller gets it as gRPC's UNKNOWN
            failed = CallFailed("UNKNOWN", type(e).__name__, f"the runner failed: {e}")
            status, error = "UNKNOWN", failed.record()
            reply = [caller, cid, ERROR, failed.to_proto().SerializeToString()]
        if recorder is not None:
            if raw and request is not None and recorder.wants()[0]:
                # The inference log reads the inputs from the request: the bytes go back in (a
                # copy, only while inputs are logged).
                request = add_raw(request, raw)
            recorder.end(started, wall, "unary", request, response, status, error,
                         ((_wire.ROUTE_TOKEN_KEY, token.decode(errors="replace")),),
                         bytes_in=-1 if size is None else size)
        return reply

    def _generate(self, send: Any, caller: bytes, cid: bytes, timeout: float, token: bytes, body: bytes,
                  received: float) -> None:
        from ._telemetry import _Outputs

        recorder = self.service.recorder
        if recorder is not None:
            started, wall = recorder.begin()
        out = _Outputs(recorder.wants()[1] if recorder is not None else False)
        request = None
        key = (caller, cid)
        try:
            try:
                request = self._check(token, body, timeout, received)
            except CallFailed as e:
                out.status, out.error = e.code, e.record()
                send([caller, cid, ERROR, e.to_proto().SerializeToString()])
                return
            with self.service._slots:
                source = self.service.host.stream(request, shape="server_stream")
                deadline = received + timeout if timeout > 0 else None
                count, pump, late = 0, None, False
                window = _Window()
                with self._streams_lock:
                    self._streams[key] = window
                try:
                    # The first item straight from this thread: no producer thread to wait for.
                    first = next(source, _END)
                    if first is not _END:
                        count = 1
                        resp = pb.StreamResponse(items=[first])
                        out.see(resp)
                        data = resp.SerializeToString()
                        window.sent(len(data))
                        send([caller, cid, ITEMS, data])
                        # Let the loop thread, which zmq just woke, take the GIL and send it on:
                        # else it waits while this thread and the producer run (up to a switch interval).
                        time.sleep(0.0002)
                        pump = Pump(source)
                        window.attach(pump)  # stopped already (a cancel): stops it
                        probe = [caller, _NO_CALL, PONG, b""]

                        def knock() -> None:
                            send(probe)

                        for batch in pump.batches():
                            count += len(batch)
                            resp = pb.StreamResponse(items=batch)
                            out.see(resp)
                            data = resp.SerializeToString()
                            window.sent(len(data))
                            send([caller, cid, ITEMS, data])
                            # Before the next batch is taken: a full window holds the items back
                            # in the Pump, whose bounded queue holds the model's generator back.
                            if not window.room(deadline, knock):
                                late = not window.stopped
                                break
                            if deadline is not None and time.monotonic() > deadline:
                                late = True
                                break
                        if window.stopped:  # stopped by the caller (cancel, or gone): no end frame
                            out.status = "CANCELLED"
                            return
                        if late:  # the caller's own deadline ends its side
                            out.status = "DEADLINE_EXCEEDED"
                            return
                    resp = pb.StreamResponse(end=pb.End(count=count))
                except CallFailed as e:
                    resp = pb.StreamResponse(error=e.to_proto())
                finally:
                    if pump is not None:
                        pump.stop()
                    else:
                        source.close()
                    with self._streams_lock:
                        self._streams.pop(key, None)
                out.see(resp)
                send([caller, cid, ITEMS, resp.SerializeToString()])
        finally:
            if recorder is not None:
                recorder.end(started, wall, "server_stream", (request, None), out.kept(), out.status, out.error,
                             ((_wire.ROUTE_TOKEN_KEY, token.decode(errors="replace")),), bytes_out=out.bytes)
