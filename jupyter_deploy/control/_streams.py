"""Budgets of the control plane's stream RPCs, so that unary calls always find a thread.

The daemon's gRPC server is synchronous: each open stream (an upload, an export, a
watch) holds one of its threads for as long as it lasts. ``make_server`` sizes the
pool as ``UNARY_THREADS`` + ``MAX_TRANSFERS`` + ``MAX_WATCHERS``, and the streams are
capped below their share, so ``List``, ``GetInfo`` and the like answer whatever the
streams do:

- ``Slots``: uploads and exports open at once, per user (``max_control_streams`` of
  ``limits.yaml``) and on the whole daemon (``MAX_TRANSFERS``); watches per user
  (``max_watches``; ``_events.MAX_WATCHERS`` caps them on the whole daemon). A refused
  stream is RESOURCE_EXHAUSTED at once, before it reads or sends anything;
- ``IdleWatch``: an upload that sends nothing, or an export whose reader takes nothing,
  for ``upload_idle_seconds`` is cancelled with DEADLINE_EXCEEDED (it made no progress
  in the time allowed: a timeout, not a quota; sending again may well work), which ends
  the RPC on its thread and frees it. An upload's partial data goes with it.

Example::

    slots, idle = Slots(limits), IdleWatch(limits.upload_idle_seconds)
    with slots.transfer(caller, "upload") as slot, idle.track(context, "upload") as stream:
        context.add_callback(slot.release)
        registry.upload(caller, stream.requests(request_iterator))
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from ._errors import ResourceExhausted
from ._limits import refuse

log = logging.getLogger("jupyter_deploy.streams")

#: Threads kept for unary calls (and for streams refused at once).
UNARY_THREADS = 32
#: Uploads and exports open at once on the whole daemon, whoever the users.
MAX_TRANSFERS = 16


class Slot:
    """One open stream's place in its budget; ``release()`` gives it back (once, however often called).

    The stream's RPC releases it when it ends, and a callback of its context when the
    RPC terminates any other way (a cancelled response stream may never resume).
    """

    def __init__(self, counter: collections.Counter, user_id: str, lock: threading.Lock):
        self._counter, self._user, self._lock = counter, user_id, lock
        self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._counter[self._user] -= 1

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Slots:
    """Counts the open streams per user and in all; ``transfer()`` and ``watch()`` take one.

    Args:
        limits: a ``configs.limits.LimitsConfig`` (per-user ``max_control_streams``, ``max_watches``).
        max_transfers: uploads and exports open at once on the whole daemon.
    """

    def __init__(self, limits: Any, max_transfers: int = MAX_TRANSFERS):
        self.limits, self.max_transfers = limits, max_transfers
        self._lock = threading.Lock()
        self._transfers: collections.Counter[str] = collections.Counter()
        self._watches: collections.Counter[str] = collections.Counter()

    def open(self, user_id: str) -> dict[str, int]:
        """What ``user_id`` holds now: ``{"max_control_streams": n, "max_watches": n}``."""
        with self._lock:
            return {"max_control_streams": self._transfers[user_id], "max_watches": self._watches[user_id]}

    def transfer(self, user_id: str, what: str) -> Slot:
        """One upload or export slot of ``user_id``; ResourceExhausted if none is free."""
        limit = self.limits.for_user(user_id).max_control_streams
        with self._lock:
            held = self._transfers[user_id]
            if held >= limit:
                refuse("max_control_streams", limit, f"another {what}", user_id,
                       f"{held} uploads and exports open now")
            total = sum(self._transfers.values())
            if total >= self.max_transfers:
                raise ResourceExhausted(f"the daemon has {total} uploads and exports open, the most it runs at "
                                        f"once for all users together; try the {what} again in a moment")
            self._transfers[user_id] += 1
            return Slot(self._transfers, user_id, self._lock)

    def watch(self, user_id: str) -> Slot:
        """One Watch slot of ``user_id``; ResourceExhausted if none is free."""
        limit = self.limits.for_user(user_id).max_watches
        with self._lock:
            held = self._watches[user_id]
            if held >= limit:
                refuse("max_watches", limit, "another watch", user_id, f"{held} open now")
            self._watches[user_id] += 1
            return Slot(self._watches, user_id, self._lock)


class _Stream:
    """One tracked stream: since when it has waited on its peer (None while it works)."""

    def __init__(self, context: grpc.ServicerContext, what: str):
        self.context, self.what = context, what
        self.waiting_since: float | None = None

    def requests(self, iterator: Iterator[Any]) -> Iterator[Any]:
        """``iterator`` (a request stream); the time spent waiting for each next message counts as idle."""
        while True:
            self.waiting_since = time.monotonic()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.waiting_since = None
            yield item

    def responses(self, iterator: Iterator[Any]) -> Iterator[Any]:
        """``iterator`` (a response stream); the time the server waits to send each message counts as idle."""
        for item in iterator:
            self.waiting_since = time.monotonic()
            yield item
            self.waiting_since = None


class IdleWatch:
    """Cancels tracked streams that waited on their peer longer than ``seconds``, from one thread."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._lock = threading.Lock()
        self._streams: set[_Stream] = set()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @contextlib.contextmanager
    def track(self, context: grpc.ServicerContext, what: str) -> Iterator[_Stream]:
        """Watch the stream of ``context`` (an ``what``: upload, export) for the block."""
        stream = _Stream(context, what)
        with self._lock:
            self._streams.add(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jupyter_deploy-idle", daemon=True)
                self._thread.start()
        try:
            yield stream
        finally:
            with self._lock:
                self._streams.discard(stream)

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._lock:
                idle = [s for s in self._streams if s.waiting_since is not None
                        and now - s.waiting_since > self.seconds]
                self._streams.difference_update(idle)
            for stream in idle:
                log.warning("cancelling an idle %s stream (nothing moved for %g s)", stream.what, self.seconds)
                idle_side = "the upload sent" if stream.what == "upload" else f"the {stream.what}'s reader took"
                cancel(stream.context, grpc.StatusCode.DEADLINE_EXCEEDED,
                       f"{idle_side} nothing for {self.seconds:g} s (the daemon's upload_idle_seconds), so "
                       f"the daemon cancelled the {stream.what} and kept none of it; try again")


def cancel(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End the RPC of ``context`` now, from any thread, with ``code`` and ``details``.

    ``ServicerContext.abort`` only works on the RPC's own thread, which is blocked
    waiting for the peer here; the call's own cancel-with-status does the same from
    outside (the RPC's thread then gets an error and returns). Where grpc lacks it,
    a plain cancel (CANCELLED) still frees the thread.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], details)
    except (AttributeError, TypeError):
        context.cancel()
