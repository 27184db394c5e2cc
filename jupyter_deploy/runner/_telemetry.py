"""Access records, inference logs and load figures of one runner, written off the request path.

A call's handler gives the recorder a tuple (when, how long, status, and
references to the request and the response); a background thread turns the
tuples into JSON lines every ``interval`` seconds and appends them to a spool
file that the control plane reads and stores. On the request path that is three
clock reads and two deque appends, no lock; the counters (requests, errors, calls
in flight and their average), encoding, sizes and the inference logger's JSON all
are worked out on the background thread.

Files (the control plane names the directory in ``$JUPYTER_DEPLOY_TELEMETRY``,
one per replica; without it nothing is recorded):

- ``NNNNNNNNNN.jsonl``: records, one JSON object a line, in segments of about
  ``segment_bytes``; a restarted runner starts a new segment;
- ``stats.json``: the latest load figures (in flight, queued, the average in
  flight over the last tick, counters), replaced atomically every tick;
- ``failure.json``: the model's own exception when ``load_model``, ``test`` or the
  import of its files raised (``write_failure``), written just before the runner exits;
- ``../logging.json`` (one per deployment, written by the control plane): the
  inference logger's settings, read again whenever it changes.

The runner reaches these files through its folder and the folder above, opened
once at start (file descriptors), not by their paths: where it runs as an OS user
of its own (``control._sandbox``), a folder above the home that later stops
letting it pass (a ``chmod``) does not cut it off from them.

SIGKILL: each tick's lines go out in one ``write`` and are flushed, so they
sit in the kernel's page cache and outlive the process; what a SIGKILL loses is
what was buffered since the last tick, at most ``interval`` seconds (0.2 by
default) of records. ``JUPYTER_DEPLOY_CALL_LOG=off`` turns the recorder off
entirely (a switch for measuring its cost; autoscaling then sees no load).

Example::

    recorder = CallRecorder.from_environment()   # None when the runner was not started by a daemon
    t0, wall = recorder.begin()
    recorder.end(t0, wall, "unary", request, response, "OK", None, metadata)
    recorder.close()                               # a last flush
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from .. import _wire
from .._wire import LOGGING_FILE, SEGMENT_SUFFIX, STATS_FILE, TELEMETRY_ENV
from ..proto import runner_pb2 as pb

#: ``off``: record nothing (for measuring the recorder's own cost).
SWITCH_ENV = "JUPYTER_DEPLOY_CALL_LOG"

#: Inference logger modes: which of inputs and outputs are recorded beside the access fields.
MODES = {"none": (False, False), "model_inputs": (True, False), "predictions": (False, True),
         "all": (True, True)}
#: Media (bytes, images, audio, video, arrays, tables) up to this size are kept inline (base64).
DEFAULT_INLINE_BYTES = 64 << 10
#: Stream items recorded per call; a longer stream is recorded as its first items and its count.
MAX_STREAM_ITEMS = 1000


def _open_folder(path: Path, path_only: bool = False) -> int | None:
    """A file descriptor of the folder ``path`` for ``dir_fd`` calls; None where there is none
    (no ``dir_fd`` support, or, without ``O_PATH``, a folder one may pass but not read)."""
    if os.open not in os.supports_dir_fd:
        return None
    flags = getattr(os, "O_PATH", os.O_RDONLY) if path_only else os.O_RDONLY
    try:
        return os.open(path, flags | os.O_DIRECTORY)
    except OSError:
        return None


#: A failure record's message and traceback are cut to these many characters (a model may raise with
#: a whole tensor in its message).
MAX_FAILURE_MESSAGE = 4000
MAX_FAILURE_TRACEBACK = 16000


def write_failure(step: str, type_name: str, message: str, traceback: str = "") -> bool:
    """Record in ``failure.json`` that the model's own code raised in ``step``; False when nothing was
    written (no telemetry folder: a runner not started by a daemon, or an unwritable one).

    The control plane reads it once the runner has exited and fails the deployment with the
    exception itself, rather than restarting a replica that would fail the same way.
    """
    directory = os.environ.get(TELEMETRY_ENV, "")
    if not directory:
        return False
    record = {_wire.FAIL_STEP: step, _wire.FAIL_TYPE: type_name,
              _wire.FAIL_MESSAGE: message[:MAX_FAILURE_MESSAGE],
              _wire.FAIL_TRACEBACK: traceback[-MAX_FAILURE_TRACEBACK:]}
    folder = Path(directory)
    tmp = folder / f".{_wire.FAILURE_FILE}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record))
        os.replace(tmp, folder / _wire.FAILURE_FILE)  # whole or not at all
    except OSError:
        return False
    return True


def write_step(step: str) -> None:
    """Record in ``step.json`` what this starting runner does now (``environment``, ``import``,
    ``load_model``, ``test``), for the deployment's status to show while it waits."""
    directory = os.environ.get(TELEMETRY_ENV, "")
    if not directory:
        return
    folder = Path(directory)
    tmp = folder / f".{_wire.STEP_FILE}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "since": time.time()}))
        os.replace(tmp, folder / _wire.STEP_FILE)
    except OSError:
        pass


def logging_settings(inference_logger: dict | None) -> dict:
    """What a runner reads from ``logging.json``, from a deployment's ``inference_logger`` config."""
    cfg = inference_logger or {}
    return {"mode": cfg.get("mode", "none"), "max_inline_bytes": cfg.get("max_inline_bytes", DEFAULT_INLINE_BYTES)}


class CallRecorder:
    """Records every call of one runner and ships the records in the background.

    Args:
        directory: this replica's telemetry directory (created if missing).
        interval: seconds between flushes (the most a SIGKILL can lose).
        segment_bytes: a spool file at least this large is closed and a new one begun.
        stream_param: ``method -> name`` of a bidirectional method's stream parameter.
        capacity: calls the runner serves at once (in flight beyond it are queued).
    """

    def __init__(self, directory: str | Path, *, interval: float = 0.2, segment_bytes: int = 8 << 20,
                 stream_param: Callable[[str], str] | None = None, capacity: int = 32):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._dir_fd = _open_folder(self.dir)
        self._parent_fd = _open_folder(self.dir.parent, path_only=True)
        self.capacity = capacity  # calls served at once; more in flight wait in a queue
        self.interval, self.segment_bytes = interval, segment_bytes
        self.stream_param = stream_param or (lambda method: "items")
        self.version = os.environ.get("MODEL_VERSION", "")
        self.started_at = time.time()
        # The request path only appends (a C call each, atomic under the GIL: no lock for the
        # handler threads to contend for); the tick drains both and keeps the counts.
        self._buffer: collections.deque = collections.deque()  # one tuple per call that ended
        self._starts: collections.deque = collections.deque()  # perf_counter of each call begun
        self._in_flight = 0         # calls begun but not ended, as of the last tick
        self._last_tick = time.perf_counter()
        self._ended_sum = 0.0       # sum of the end times of calls that ended since the last tick
        self._ended = 0             # calls that ended since the last tick
        self.requests = self.errors = 0
        self.last_request_at = 0.0
        self._callers: dict[str, str] = {}
        self._id_prefix, self._ids = os.urandom(4).hex(), 0
        self._settings_mtime: float | None = None
        self.mode, self.keep_inputs, self.keep_outputs = "none", False, False
        self.max_inline = DEFAULT_INLINE_BYTES
        self._read_settings()
        self._file: Any = None
        self._problem = ""
        self._segment = self._first_segment()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="call-recorder", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls, **kwargs: Any) -> CallRecorder | None:
        directory = os.environ.get(TELEMETRY_ENV, "")
        if not directory or os.environ.get(SWITCH_ENV, "").lower() in ("off", "0", "false", "no"):
            return None
        return cls(directory, **kwargs)

    # ------------------------------------------------------------ the request path

    def begin(self) -> tuple[float, float]:
        """A call starts: ``(perf_counter, wall time)`` to hand back to ``end``."""
        t = time.perf_counter()
        self._starts.append(t)
        return t, time.time()

    def end(self, started: float, wall: float, shape: str, request: Any, response: Any, status: str,
            error: Any, metadata: Any, bytes_in: int = -1, bytes_out: int = -1) -> None:
        """A call ended. ``request``/``response`` are kept by reference and read on the background thread.

        For streams ``request`` is ``(start, items)`` and ``response`` the list of items kept
        (or None), with their byte counts given.
        """
        self.last_request_at = wall
        self._buffer.append((wall, time.perf_counter(), started, shape, request, response, status, error,
                             metadata, bytes_in, bytes_out))

    def wants(self) -> tuple[bool, bool]:
        """Whether a call starting now should keep its (inputs, outputs) for the inference log."""
        return self.keep_inputs, self.keep_outputs

    # ------------------------------------------------------------ the background thread

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()
        self._tick()

    def _tick(self) -> None:
        try:
            self._read_settings()
            self._flush()
            self._write_stats()
        except Exception as e:  # noqa: BLE001 - a full disk must not end the recording for good
            problem = f"{type(e).__name__}: {e}"
            if problem != self._problem:  # once, not every tick
                print(f"jupyter_deploy runner: call log: {problem}", flush=True)
            self._problem = problem
        else:
            self._problem = ""

    def close(self) -> None:
        """Flush what is buffered and stop the thread (a graceful stop loses nothing)."""
        self._stop.set()
        self._thread.join(10)
        if self._file is not None:
            self._file.close()
            self._file = None
        for fd in (self._dir_fd, self._parent_fd):
            if fd is not None:
                os.close(fd)
        self._dir_fd = self._parent_fd = None

    def _in_dir(self, name: str) -> str:
        """``name`` for a call with ``dir_fd=self._dir_fd`` (a path where there is no fd)."""
        return name if self._dir_fd is not None else str(self.dir / name)

    def _open(self, name: str, flags: int) -> int:
        return os.open(self._in_dir(name), flags, 0o666, dir_fd=self._dir_fd)

    def _read_settings(self) -> None:
        name = LOGGING_FILE if self._parent_fd is not None else str(self.dir.parent / LOGGING_FILE)
        try:
            mtime = os.stat(name, dir_fd=self._parent_fd).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._settings_mtime:
            return
        self._settings_mtime = mtime
        try:
            if mtime is None:
                data = {}
            else:
                with open(os.open(name, os.O_RDONLY, dir_fd=self._parent_fd), encoding="utf-8") as f:
                    data = json.loads(f.read())
        except (OSError, ValueError):
            data = {}
        mode = data.get("mode", "none")
        self.keep_inputs, self.keep_outputs = MODES.get(mode, (False, False))
        self.mode = mode if mode in MODES else "none"
        self.max_inline = int(data.get("max_inline_bytes", DEFAULT_INLINE_BYTES))

    def _first_segment(self) -> int:
        names = os.listdir(self._dir_fd if self._dir_fd is not None else self.dir)
        numbers = [int(n[:-len(SEGMENT_SUFFIX)]) for n in names
                   if n.endswith(SEGMENT_SUFFIX) and n[:-len(SEGMENT_SUFFIX)].isdigit()]
        return max(numbers, default=0) + 1

    def _flush(self) -> None:
        lines = []
        pop = self._buffer.popleft
        ended = errors = 0
        ended_sum = 0.0
        try:
            while True:
                try:
                    item = pop()
                except IndexError:
                    break
                ended += 1
                ended_sum += item[1]
                if item[6] != "OK":
                    errors += 1
                lines.append(self._line(item))
        finally:
            # Counted whatever happens to the lines: a record that failed to format, or a full
            # disk below, loses lines, never the load figures.
            self._ended += ended
            self._ended_sum += ended_sum
            self.requests += ended
            self.errors += errors
        if not lines:
            return
        if self._file is None or self._file.tell() >= self.segment_bytes:
            if self._file is not None:
                self._file.close()
                self._segment += 1
            # Kept open across ticks (closed by close() or the next segment).
            self._file = open(f"{self._segment:010d}{SEGMENT_SUFFIX}", "a", encoding="utf-8",  # noqa: SIM115
                              opener=lambda name, flags: self._open(name, flags))
        # One write and a flush: the lines reach the kernel together, so a SIGKILL
        # after this point loses none of them (and never half of one).
        self._file.write("".join(lines))
        self._file.flush()

    def _write_stats(self) -> None:
        # Calls drained here began no later than their ends drained by _flush before: the count in
        # flight never goes below zero. The clock is read after both drains, so each time drained
        # is at most ``t``. Calls in flight integrated over [last tick, t]: each call is counted
        # from max(its start, last tick) to min(its end, t), so
        #   busy = sum(ends) - sum(starts) + in_flight(t) * t - in_flight(last tick) * last tick
        # (a call that read its clock just before the last tick but was drained after it counts
        # from its start: microseconds, once).
        pop = self._starts.popleft
        begun = 0
        begun_sum = 0.0
        while True:
            try:
                begun_sum += pop()
            except IndexError:
                break
            begun += 1
        t = time.perf_counter()
        before, t0 = self._in_flight, self._last_tick
        in_flight = before + begun - self._ended
        busy = self._ended_sum - begun_sum + in_flight * t - before * t0
        span = t - t0
        busy = min(max(busy, 0.0), (before + begun) * span)
        self._in_flight, self._last_tick, self._ended, self._ended_sum = in_flight, t, 0, 0.0
        stats = {_wire.STAT_TIME: time.time(), "pid": os.getpid(), "started_at": self.started_at,
                 _wire.STAT_IN_FLIGHT: in_flight,
                 _wire.STAT_QUEUED: max(0, in_flight - self.capacity),
                 _wire.STAT_AVG_IN_FLIGHT: busy / span if span > 0 else float(in_flight),
                 "requests": self.requests, "errors": self.errors,
                 _wire.STAT_LAST_REQUEST_AT: self.last_request_at}
        tmp = f".{STATS_FILE}.tmp"
        with open(tmp, "w", encoding="utf-8", opener=lambda name, flags: self._open(name, flags)) as f:
            f.write(json.dumps(stats))
        os.replace(self._in_dir(tmp), self._in_dir(STATS_FILE), src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)

    # ------------------------------------------------------------ records

    def _line(self, item: tuple) -> str:
        wall, ended, started, shape, request, response, status, error, metadata, bytes_in, bytes_out = item
        latency = (ended - started) * 1000.0
        start = request[0] if shape != "unary" else request
        method = start.method if isinstance(start, pb.PredictRequest) else ""
        request_id = (start.request_id if method else "") or self._new_id()
        if bytes_in < 0:
            bytes_in = start.ByteSize() if method else 0
        if bytes_out < 0:
            bytes_out = response.ByteSize() if response is not None else 0
        # The access fields formatted by hand (strings escaped by json's C routine): a few times
        # cheaper than encoding a dict, and this runs for every call the runner serves.
        caller = self._caller(metadata, status)
        line = _LINE.format(wall, _quote(request_id), _quote(caller), _quote(method),
                            _quote(status), latency, bytes_in, bytes_out, _quote(self.version))
        extra = {}
        if error is not None:
            extra[_wire.REC_ERROR] = error
        if self.keep_inputs and method:
            extra[_wire.REC_INPUTS] = self._inputs(shape, request)
        if self.keep_outputs:
            if error is not None:
                extra[_wire.REC_OUTPUTS] = {"error": error}
            elif shape == "unary" and response is not None:
                extra[_wire.REC_OUTPUTS] = value_json(response.output, self.max_inline)
            elif shape != "unary" and response is not None:
                extra[_wire.REC_OUTPUTS] = self._items(response[0], response[1])
        if extra:
            return line + "," + _ENCODE(extra)[1:] + "\n"
        return line + "}\n"

    def _new_id(self) -> str:
        # Random per process, then counted: unique across replicas and restarts, and cheap.
        self._ids += 1
        return f"{self._id_prefix}{self._ids:08x}"

    def _inputs(self, shape: str, request: Any) -> Any:
        start = request if shape == "unary" else request[0]
        args = {e.key: value_json(e.value, self.max_inline) for e in start.args}
        if shape == "bidi" and request[1] is not None:
            args[self.stream_param(start.method)] = self._items(*request[1])
        return args

    def _items(self, items: list, count: int) -> Any:
        values = [value_json(v, self.max_inline) for v in items]
        return values if count <= len(items) else {"items": values, "count": count}

    def _caller(self, metadata: Any, status: str) -> str:
        if status == "UNAUTHENTICATED" or not metadata:
            return ""
        token = next((v for k, v in metadata if k == _wire.ROUTE_TOKEN_KEY), None)
        if not token:
            return ""
        caller = self._callers.get(token)
        if caller is None:
            # The runner verified this token when it served the call; here only its claims are read.
            try:
                payload = token.partition(".")[0]
                caller = str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("c", ""))
            except ValueError:
                caller = ""
            if len(self._callers) > 1024:
                self._callers.clear()
            self._callers[token] = caller
        return caller


# ---------------------------------------------------------------- the handlers' wrappers
# The runner's gRPC service wraps its Predict, Generate and Stream handlers with these: they
# time the call and hand the recorder references; sizes, ids and JSON are worked out on its
# background thread, off the request path.


def _failure(context: grpc.ServicerContext) -> tuple[str, dict]:
    """The status name and error of a call that raised (aborted by us, or a bug: UNKNOWN)."""
    code = context.code()
    name = code.name if code is not None else "UNKNOWN"
    details = context.details()
    if isinstance(details, bytes):
        details = details.decode(errors="replace")
    meta = dict(context.trailing_metadata() or ())
    error_type = meta.get(_wire.ERROR_TYPE_KEY, "")
    return name, {"code": name, "type": error_type, "message": details or ""}


def recorded_unary(recorder: CallRecorder, handler: Callable) -> Callable:
    def predict(request: Any, context: grpc.ServicerContext) -> pb.PredictResponse:
        started, wall = recorder.begin()
        try:
            response = handler(request, context)
        except BaseException:
            status, error = _failure(context)
            recorder.end(started, wall, "unary", request, None, status, error, context.invocation_metadata())
            raise
        recorder.end(started, wall, "unary", request, response, "OK", None, context.invocation_metadata())
        return response
    return predict


class _Outputs:
    """Counts a stream's bytes out, notes an error frame, keeps the first items for the inference log."""

    def __init__(self, keep: bool):
        self.bytes, self.count, self.status, self.error = 0, 0, "OK", None
        self.ended = False
        self.items: list | None = [] if keep else None

    def see(self, resp: pb.StreamResponse) -> None:
        self.bytes += resp.ByteSize()
        self.ended = self.ended or resp.HasField("end")
        self.count += len(resp.items)
        if self.items is not None and len(self.items) < MAX_STREAM_ITEMS:
            self.items.extend(resp.items[:MAX_STREAM_ITEMS - len(self.items)])
        if resp.HasField("error"):
            err = resp.error
            self.status, self.error = err.code, {"code": err.code, "type": err.type, "message": err.message}

    def kept(self) -> tuple[list, int] | None:
        return None if self.items is None else (self.items, self.count)

    def finished(self, context: grpc.ServicerContext) -> None:
        """The handler returned: a stream that never sent its end frame was cut off (the caller
        cancelled, or its deadline passed): not OK."""
        if self.status == "OK" and not self.ended and not context.is_active():
            remaining = context.time_remaining()
            self.status = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


def recorded_generate(recorder: CallRecorder, handler: Callable) -> Callable:
    def generate(request: Any, context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        started, wall = recorder.begin()
        out = _Outputs(recorder.wants()[1])
        try:
            for resp in handler(request, context):
                out.see(resp)
                yield resp
            out.finished(context)
        except GeneratorExit:  # the caller went away (after the end frame, it just stopped reading)
            out.status = out.status if out.ended else "CANCELLED"
            raise
        except BaseException:
            out.status, out.error = _failure(context)
            raise
        finally:
            recorder.end(started, wall, "server_stream", (request, None), out.kept(), out.status, out.error,
                         context.invocation_metadata(), bytes_out=out.bytes)
    return generate


class _Inputs:
    """Wraps a bidirectional call's request messages: counts their bytes, keeps the start and first items."""

    def __init__(self, requests: Iterator[Any], keep: bool):
        self._requests = requests
        self.bytes, self.count, self.start = 0, 0, None
        self.items: list | None = [] if keep else None

    def __iter__(self) -> _Inputs:
        return self

    def __next__(self) -> Any:
        msg = next(self._requests)
        if isinstance(msg, pb.StreamRequest):
            self.bytes += msg.ByteSize()
            self.count += len(msg.items)
            if self.start is None and msg.HasField("start"):
                self.start = msg.start
            if self.items is not None and len(self.items) < MAX_STREAM_ITEMS:
                self.items.extend(msg.items[:MAX_STREAM_ITEMS - len(self.items)])
        return msg


def recorded_stream(recorder: CallRecorder, handler: Callable) -> Callable:
    def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        started, wall = recorder.begin()
        keep_in, keep_out = recorder.wants()
        inputs, out = _Inputs(requests, keep_in), _Outputs(keep_out)
        try:
            for resp in handler(inputs, context):
                out.see(resp)
                yield resp
            out.finished(context)
        except GeneratorExit:
            out.status = out.status if out.ended else "CANCELLED"
            raise
        except BaseException:
            out.status, out.error = _failure(context)
            raise
        finally:
            kept_in = None if inputs.items is None else (inputs.items, inputs.count)
            recorder.end(started, wall, "bidi", (inputs.start, kept_in), out.kept(), out.status, out.error,
                         context.invocation_metadata(), bytes_in=inputs.bytes, bytes_out=out.bytes)
    return stream


# ---------------------------------------------------------------- values as JSON

#: One encoder for every line (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode
_quote = json.encoder.encode_basestring_ascii  # a str as a JSON string literal, in C
#: A record's access fields, less its closing brace: wall time (repr), the request id, caller,
#: method and status (quoted), latency, bytes in and out, and the version (quoted).
_LINE = ('{{"%s":{!r},"%s":{},"%s":{},"%s":{},"%s":{},"%s":{:.4f},"%s":{},"%s":{},"%s":{}' % (
    _wire.REC_TIME, _wire.REC_ID, _wire.REC_CALLER, _wire.REC_METHOD, _wire.REC_STATUS,
    _wire.REC_LATENCY, _wire.REC_BYTES_IN, _wire.REC_BYTES_OUT, _wire.REC_VERSION))


def _blob(data: bytes, cap: int, **fields: Any) -> dict:
    """Media by reference (size and sha256), and the bytes themselves when at most ``cap``."""
    out = {**fields, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) <= cap:
        out["data_b64"] = base64.b64encode(data).decode()
    return out


def _image(img: pb.Image, cap: int) -> dict:
    return _blob(img.data, cap, format=img.format, mode=img.mode, width=img.width, height=img.height)


def _number(x: float) -> Any:
    return x if math.isfinite(x) else str(x)  # JSON has no NaN or infinity


def value_json(v: pb.Value, cap: int = DEFAULT_INLINE_BYTES) -> Any:
    """A wire value as JSON-able data, without its declared type.

    Scalars, lists and mappings as themselves; media, arrays and tables as
    ``{"<kind>": {..., "size", "sha256"}}`` with the bytes (base64, or the values
    of a small array or table) when they are at most ``cap`` bytes.

    Example::

        value_json(pb.Value(bytes=b"abc"))
        # {'bytes': {'size': 3, 'sha256': 'ba78...', 'data_b64': 'YWJj'}}
    """
    kind = v.WhichOneof("kind")
    if kind in (None, "none"):
        return None
    if kind in ("str", "int", "bool"):
        return getattr(v, kind)
    if kind == "float":
        return _number(v.float)
    if kind == "big_int":
        return int(v.big_int)
    if kind == "list":
        return [value_json(item, cap) for item in v.list.items]
    if kind in ("map", "fields"):
        return {e.key: value_json(e.value, cap) for e in getattr(v, kind).entries}
    if kind == "bytes":
        return {"bytes": _blob(v.bytes, cap)}
    if kind == "image":
        return {"image": _image(v.image, cap)}
    if kind in ("audio", "video"):
        media = getattr(v, kind)
        return {kind: _blob(media.data, cap, mime=media.mime)}
    if kind == "concept":
        return {"concept": {"id": v.concept.id, "name": v.concept.name, "value": _number(v.concept.value)}}
    if kind == "region":
        return {"region": {"box": [_number(x) for x in v.region.box],
                           "concepts": [{"id": c.id, "name": c.name, "value": _number(c.value)}
                                        for c in v.region.concepts]}}
    if kind == "frame":
        return {"frame": {"time": _number(v.frame.time), "image": _image(v.frame.image, cap)}}
    if kind == "ndarray":
        return {"ndarray": _ndarray(v.ndarray, cap)}
    if kind == "dataframe":
        return {"dataframe": _dataframe(v.dataframe, cap)}
    return {kind: "(not recorded)"}


def _ndarray(a: pb.NDArray, cap: int) -> dict:
    out = {"dtype": a.dtype, "shape": list(a.shape), "size": len(a.data),
           "sha256": hashlib.sha256(a.data).hexdigest()}
    if len(a.data) <= cap:
        try:
            import numpy as np

            out["values"] = json.loads(json.dumps(
                np.frombuffer(a.data, dtype=np.dtype(a.dtype)).reshape(tuple(a.shape)).tolist(), default=str))
        except Exception:  # noqa: BLE001 - an odd dtype: keep the bytes instead
            out["data_b64"] = base64.b64encode(a.data).decode()
    return out


def _dataframe(df: pb.DataFrame, cap: int) -> dict:
    data = df.SerializeToString()
    out = {"columns": [str(value_json(c.name, cap)) for c in df.columns], "size": len(data),
           "sha256": hashlib.sha256(data).hexdigest()}
    if len(data) <= cap:
        try:
            from ..model._dataframe import decode_dataframe

            out["split"] = json.loads(decode_dataframe(df).to_json(orient="split", date_format="iso"))
        except Exception:  # noqa: BLE001, S110 - a table pandas cannot rebuild here: the reference stays
            pass
    return out
