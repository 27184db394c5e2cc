"""Calls to a replica on this host over its ipc socket (``runner._ipc``), below gRPC's per-call cost.

``IpcTransport`` has ``GrpcTransport``'s interface and errors: a replica that is gone is
``RunnerError`` UNAVAILABLE (so ``_RoutedTransport`` goes on to another), a model's failure
the same ``ModelError``/``InputError``/``RunnerError`` as over gRPC. Bidirectional calls go over
gRPC. A replica whose ipc socket does not answer when first called (another network namespace,
an older runner) is called over gRPC from then on.

zmq sockets are not thread-safe: each thread calling through a transport gets its own DEALER
socket (measured against one socket per process with an I/O thread that hands calls over:
the hand-over costs more than the socket, see the README's data-plane section).
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from typing import Any, Iterator

import zmq

from ..errors import RunnerError
from ..proto import runner_pb2 as pb
from ._methods import call_error

HEADER = struct.Struct("<cQd")
# zmq's int-level flags below: pyzmq's sugar (enum flags, RCVMORE read as an enum) costs more
# per call than the zmq call itself.
_RCVMORE = int(zmq.RCVMORE)
_MORE, _NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK), int(zmq.NOBLOCK)
#: Frames from this size on are sent from the caller's object, not copied (pyzmq's own threshold).
_COPY_UNDER = zmq.COPY_THRESHOLD
UNARY, STREAM, CANCEL, PING = b"u", b"s", b"c", b"p"
RESPONSE, ITEMS, ERROR, PONG = b"r", b"i", b"e", b"p"
CREDIT = b"k"
COUNT = struct.Struct("<I")
#: A unary call with a small body and no bytes frames: header, token length, token and body in
#: one frame (each frame is a zmq call that lets go of the GIL and takes it back).
JOINED, TOKEN_LEN = b"j", struct.Struct("<H")
JOIN_UNDER = 16 << 10
#: A stream's item messages consumed before they are acknowledged (a credit): half the runner's
#: window of 32 messages or 4 MiB (``runner._ipc.WINDOW``), so the runner never waits on a
#: caller that already consumed what it sent.
ACK_EVERY = 16
ACK_BYTES = 2 << 20
#: Seconds a replica's ipc socket gets to answer the first ping before its calls go over gRPC.
CONNECT_TIMEOUT = 2.0
#: Requests larger than this (bytes) go over gRPC: the runner's ipc socket caps a message at
#: 64 MiB over its --max-message-mb and drops the connection of a caller that sends more.
LARGE = 32 << 20
#: Seconds a call waits without hearing from the runner before it pings it (see ``_Conn.recv``).
QUIET = 5.0
#: A call's wait wakes this often (ms) to see whether the replica went away.
_SLICE_MS = 100
# Gone, or never there: a connect to an abstract name nobody binds is refused at once, and zmq
# then says CONNECT_RETRIED (instead of waiting out CONNECT_TIMEOUT for it).
_DISCONNECTED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_MONITOR_STOPPED
                 | zmq.EVENT_CONNECT_RETRIED)


class _Gone(Exception):
    """The replica's socket went away (or never answered)."""


class _Conn:
    """One thread's DEALER to one replica, with a monitor that says when the replica went away."""

    _seq = itertools.count(1)

    def __init__(self, endpoint: str):
        ctx = zmq.Context.instance()
        self.sock = sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # a send with no replica behind it fails at once
        # Its own inproc name: pyzmq's default is named after the socket's fd, which a closed
        # socket of another thread may have had, its monitor's name still taken.
        self.monitor = sock.get_monitor_socket(_DISCONNECTED, addr=f"inproc://jupyter_deploy-monitor-{next(self._seq)}")
        self.ids = itertools.count(1)
        self.gone = False
        self._waits = -1  # the socket's RCVTIMEO (ms) as last set
        sock.connect(endpoint)
        try:
            cid = next(self.ids)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while True:  # IMMEDIATE: the send waits until the connection is made
                try:
                    sock.send_multipart([HEADER.pack(PING, cid, 0.0), b""], zmq.NOBLOCK)
                    break
                except zmq.Again:
                    if time.monotonic() > deadline or self._went_away():
                        raise _Gone("no ipc connection") from None
                    time.sleep(0.001)
            self.recv(cid, deadline)
        except TimeoutError:
            self.close()
            raise _Gone("no answer to the ipc ping") from None
        except BaseException:
            self.close()
            raise

    def _went_away(self) -> bool:
        """Read the monitor's events: whether the replica's socket closed (or never was)."""
        monitor = self.monitor
        while monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            event = monitor.recv_multipart()
            if struct.unpack("=H", event[0][:2])[0] & _DISCONNECTED:
                self.gone = True
        return self.gone

    def close(self) -> None:
        if self.sock.closed:
            return
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(0)

    def __del__(self) -> None:
        # pyzmq leaves a dropped socket (and its monitor) open: a route renewed or a thread
        # ended would keep its sockets until the process's limit is reached.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def send(self, frames: list) -> None:
        if self.gone:
            raise _Gone("the replica went away")
        sock = self.sock
        try:
            # IMMEDIATE: with no replica connected the first frame fails, and nothing is sent.
            for frame in frames[:-1]:
                # A large bytes argument's frame (``unary``) goes without a copy, as the last does.
                sock.send(frame, _MORE, copy=len(frame) < _COPY_UNDER)
            sock.send(frames[-1], _NOBLOCK, copy=False)
        except zmq.Again:
            self.gone = True
            raise _Gone("the replica is not connected") from None

    def recv(self, cid: int, deadline: float | None) -> list[bytes]:
        """The next reply frames of call ``cid``; replies of calls given up before are dropped.

        A call that hears nothing for ``QUIET`` seconds pings the runner: a runner that does not
        answer the ping either is taken as gone (``_Gone``), as one whose socket closed is."""
        want = struct.pack("<Q", cid)
        sock = self.sock
        heard = time.monotonic()
        ping: tuple[bytes, float] | None = None
        while True:
            if self.gone:
                raise _Gone("the replica went away")
            ms = _SLICE_MS
            if deadline is not None:
                ms = min(ms, int((deadline - time.monotonic()) * 1000) + 1)
                if ms <= 0:
                    raise TimeoutError
            if ms != self._waits:
                sock.setsockopt(zmq.RCVTIMEO, ms)
                self._waits = ms
            # A blocking read, up to a slice (one zmq call, where a poll and then a read are two,
            # each letting go of the GIL and taking it back); between slices, the monitor says
            # whether the replica went away.
            try:
                frames = _read(sock)
            except zmq.Again:
                pass
            else:
                if frames[0] == want:
                    return frames
                if ping is not None and frames[0] == ping[0]:
                    ping, heard = None, time.monotonic()
                continue
            self._went_away()
            now = time.monotonic()
            if ping is None and now - heard > QUIET:
                ping_id = next(self.ids)
                ping = (struct.pack("<Q", ping_id), now)
                self.send([HEADER.pack(PING, ping_id, 0.0), b""])
            elif ping is not None and now - ping[1] > CONNECT_TIMEOUT:
                self.gone = True
                raise _Gone("the replica's ipc socket stopped answering")


class IpcTransport:
    """Moves encoded calls to one replica over its ipc endpoint (see ``_methods.Transport``).

    Args:
        endpoint: the replica's ``ipc://@...`` endpoint (``Route.ipc_addresses``).
        token: the route token the runner checks.
        timeout: seconds each call may take (None: no deadline).
        grpc: the replica's GrpcTransport: for bidirectional calls, and for every call if the
            ipc socket does not answer.
    """

    def __init__(self, endpoint: str, token: str, timeout: float | None, grpc: Any):
        self.endpoint = endpoint
        self._token = token.encode()
        self.timeout = timeout
        self.grpc = grpc
        self._local = threading.local()
        self._unreachable = False
        self._gone = False  # a call found the replica gone: every thread's calls fail at once

    def __repr__(self) -> str:
        return f"<IpcTransport {self.endpoint}>"

    def _conn(self) -> _Conn | None:
        if self._gone:
            raise self._unavailable("the replica went away")
        conn = getattr(self._local, "conn", None)
        if conn is None and not self._unreachable:
            try:
                conn = self._local.conn = _Conn(self.endpoint)
            except _Gone:
                # Never answered (gone, another network namespace, an older runner): gRPC from
                # now on, which tells a replica that is gone (UNAVAILABLE) from one it reaches.
                self._unreachable = True
        return conn

    def _lost(self, conn: _Conn, why: BaseException) -> RunnerError:
        """The replica went away under ``conn``: close it (sockets are few: zmq's limit is
        per process), and fail this transport's later calls at once."""
        self._gone = True
        self._local.conn = None
        conn.close()
        return self._unavailable(str(why))

    def _unavailable(self, why: str) -> RunnerError:
        return RunnerError(f"UNAVAILABLE: replica at {self.endpoint}: {why}", "UNAVAILABLE")

    def unary(self, request: pb.PredictRequest, raw: dict[str, bytes] | None = None) -> pb.Value:
        conn = self._conn()
        if conn is None:
            return self.grpc.unary(request, raw)
        body = request.SerializeToString()
        frames = [b"", body]
        if raw:
            # The large bytes arguments go as frames of their own, sent from the caller's objects
            # (zmq copies nothing; the runner reads each into one bytes): a megabyte through
            # the protobuf costs two copies here and two there, each into new memory.
            frames += [b"\0".join(key.encode() for key in raw), *raw.values()]
        if len(body) + (sum(map(len, raw.values())) if raw else 0) > LARGE:
            # Where a size limit answers it (INVALID_ARGUMENT with the limit), not zmq's message cap.
            return self.grpc.unary(request, raw)
        cid = next(conn.ids)
        timeout = self.timeout
        if raw or len(body) > JOIN_UNDER:
            frames[0] = HEADER.pack(UNARY, cid, timeout or 0.0) + self._token
        else:
            token = self._token
            frames = [HEADER.pack(JOINED, cid, timeout or 0.0) + TOKEN_LEN.pack(len(token)) + token + body]
        try:
            conn.send(frames)
            frames = conn.recv(cid, None if timeout is None else time.monotonic() + timeout)
        except _Gone as e:
            raise self._lost(conn, e) from None
        except TimeoutError:
            raise RunnerError("DEADLINE_EXCEEDED: Deadline Exceeded", "DEADLINE_EXCEEDED") from None
        if frames[1] == RESPONSE:
            return pb.PredictResponse.FromString(frames[2]).output
        raise _error(frames)

    def server_stream(self, request: pb.PredictRequest) -> Iterator[pb.Value]:
        conn = self._conn()
        if conn is None or request.ByteSize() > LARGE:
            return self.grpc.server_stream(request)
        return self._stream(conn, request)

    def _stream(self, conn: _Conn, request: pb.PredictRequest) -> Iterator[pb.Value]:
        cid = next(conn.ids)
        timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = False
        unacked = unacked_bytes = 0  # messages consumed and not yet acknowledged
        try:
            conn.send([HEADER.pack(STREAM, cid, timeout or 0.0) + self._token, request.SerializeToString()])
            while True:
                frames = conn.recv(cid, deadline)
                if frames[1] != ITEMS:
                    ended = True
                    raise _error(frames)
                resp = pb.StreamResponse.FromString(frames[2])
                yield from resp.items
                if resp.HasField("error"):
                    ended = True
                    err = resp.error
                    raise call_error(err.code, err.type, err.message, err.traceback)
                if resp.HasField("end"):
                    ended = True
                    return
                # Consumed (the caller asked for the item after its last): the runner may send more.
                unacked += 1
                unacked_bytes += len(frames[2])
                if unacked >= ACK_EVERY or unacked_bytes >= ACK_BYTES:
                    conn.send([HEADER.pack(CREDIT, cid, 0.0), COUNT.pack(unacked)])
                    unacked = unacked_bytes = 0
        except _Gone as e:
            ended = True
            raise self._lost(conn, e) from None
        except TimeoutError:
            raise RunnerError("DEADLINE_EXCEEDED: Deadline Exceeded", "DEADLINE_EXCEEDED") from None
        finally:
            if not ended:  # the caller stopped early (or the deadline passed): stop the model's generator
                try:
                    conn.send([HEADER.pack(CANCEL, cid, 0.0), b""])
                except _Gone:
                    pass

    def bidi(self, request: pb.PredictRequest, items: Iterator[pb.Value]) -> Iterator[pb.Value]:
        return self.grpc.bidi(request, items)


def _read(sock: Any) -> list[bytes]:
    """The next reply as ``[call id, kind, body]``: the runner sends a small one as one frame."""
    first = sock.recv()
    if not sock.get(_RCVMORE):
        return [first[:8], first[8:9], first[9:]]
    frames = [first, sock.recv()]
    while sock.get(_RCVMORE):
        frames.append(sock.recv())
    if len(frames) == 2:  # [call id and kind, body]
        return [first[:8], first[8:9], frames[1]]
    return frames


def _error(frames: list[bytes]) -> Exception:
    if frames[1] == ERROR:
        err = pb.Error.FromString(frames[2])
        return call_error(err.code, err.type, err.message, err.traceback)
    return RunnerError(f"INTERNAL: unexpected ipc reply kind {frames[1]!r}", "INTERNAL")
