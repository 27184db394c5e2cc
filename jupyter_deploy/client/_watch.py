"""The control plane's pushed state changes, as a client sees them (the ``Watch`` stream).

Example::

    for event in client.watch(kinds=["deployment"], timeout=60):
        print(event.deployment_id, event.state)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from ..errors import ControlPlaneError
from ..proto import control_pb2 as cpb
from ._errors import control_error

if TYPE_CHECKING:
    from ._api import Client

#: Watch refusals after which a caller polls instead (too many watchers; an older daemon).
NO_STREAM = ("RESOURCE_EXHAUSTED", "UNIMPLEMENTED")


@dataclass(frozen=True)
class Event:
    """One state change (or, with ``initial``, one part of the current state).

    ``kind`` is ``"deployment"``, ``"replica"``, ``"route"`` (the replicas serving a
    deployment's version changed: ``state`` is SERVING or NOT_SERVING, ``addresses``
    lists them) or ``"synced"`` (the current state has been sent; changes follow).
    ``state`` is DELETED once the resource is gone.

    Example::

        for event in Client().watch(["route"], ["echo"], timeout=60):
            if event.state == "SERVING":
                print("served by", event.addresses)
    """

    kind: str
    id: str
    user_id: str
    deployment_id: str
    state: str
    reason: str
    version_id: str
    addresses: tuple[str, ...]
    time: float
    initial: bool
    seq: int

    @classmethod
    def from_proto(cls, e: cpb.Event) -> "Event":
        return cls(kind=e.kind, id=e.id, user_id=e.user_id, deployment_id=e.deployment_id, state=e.state,
                   reason=e.reason, version_id=e.version_id, addresses=tuple(e.addresses), time=e.time,
                   initial=e.initial, seq=e.seq)


def watch(client: "Client", kinds: Iterable[str] | None, ids: Iterable[str] | None,
          user_id: str | None, timeout: float | None) -> Iterator[Event]:
    """The Watch stream's events; it ends quietly when ``timeout`` passes (closing it cancels it)."""
    request = cpb.WatchRequest(kinds=list(kinds or ()), ids=list(ids or ()), user_id=user_id or "")
    deadline = None if timeout is None else time.monotonic() + timeout
    for attempt in range(2):
        stub = client._stub
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        call = stub.Watch(request, timeout=left, metadata=client._metadata)
        received = False
        try:
            for event in call:
                received = True
                yield Event.from_proto(event)
            return
        except grpc.RpcError as e:
            # A daemon that went away before the stream began: find it again, and watch there.
            if (e.code() == grpc.StatusCode.UNAVAILABLE and not received and attempt == 0
                    and client._reconnect(stub)):
                continue
            if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                raise control_error(e) from None
            return
        finally:
            call.cancel()


def changes(client: "Client", deployment_id: str, user_id: str | None, timeout: float,
            kinds: Iterable[str] | None = None, poll: float = 0.2) -> Iterator[None]:
    """Yield once now and again each time something about the deployment may have changed,
    until ``timeout`` passes: on pushed events, or, where the daemon refuses a stream (too
    many watchers), every ``poll`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        with contextlib.closing(watch(client, kinds, [deployment_id], user_id, timeout)) as events:
            for event in events:
                if not event.initial:  # the first change, or the end of the current state
                    yield
    except ControlPlaneError as e:
        if e.code not in NO_STREAM:
            raise
    left = deadline - time.monotonic()
    if left > 0:  # the stream was refused, or ended early (the daemon is stopping): poll the rest
        yield from ticks(left, poll)


def ticks(timeout: float, poll: float) -> Iterator[None]:
    """Yield now, then after pauses growing to ``poll`` seconds, until ``timeout`` passes: what
    a waiter does where no stream can tell it of changes."""
    deadline = time.monotonic() + timeout
    pause = 0.01  # short at first: a replica of a small model is ready in a few tenths of a second
    while True:
        yield
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(pause, left))
        pause = min(pause * 2, poll)


class RouteWatch:
    """One per Client: learns, pushed, when the replicas serving a deployment change, so that
    cached routes are resolved again at once instead of at their next renewal.

    ``version(deployment_id)`` changes whenever the deployment's route may have changed (and,
    for all, when a stream begins: changes may have been missed before). Without a stream
    (refused, or the daemon is away) routes keep to their renewal times, and calls over them
    go on without the daemon; it tries again after ``retry`` seconds.
    """

    def __init__(self, stub: Any, metadata: Any, retry: float = 10.0):
        # The stub, not the client: a client nobody holds any more is collected, and its
        # finalizer closes this stream.
        self.stub, self.metadata, self.retry = stub, metadata, retry
        self._changes: dict[str, int] = {}
        self._epoch = 0
        self._call: Any = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._closed = False
        #: True while the stream runs and has sent the current state: route changes are pushed.
        self.live = False

    def version(self, deployment_id: str) -> tuple[int, int]:
        return self._epoch, self._changes.get(deployment_id, 0)

    def ensure(self) -> None:
        """Start the stream unless it runs (or failed lately)."""
        with self._lock:
            if self._call is not None or self._closed or time.monotonic() < self._retry_at:
                return
            self._call = self.stub.Watch(cpb.WatchRequest(kinds=["route"]), metadata=self.metadata)
            call = self._call
        threading.Thread(target=self._run, args=(call,), name="jupyter_deploy-routes", daemon=True).start()

    def _run(self, call: Any) -> None:
        try:
            for event in call:
                if event.kind == "synced":  # routes resolved before the stream began may be stale
                    self._epoch += 1
                    self.live = True
                elif not event.initial:
                    self._changes[event.deployment_id] = self._changes.get(event.deployment_id, 0) + 1
        except grpc.RpcError:
            pass  # refused (too many watchers), cancelled, or the daemon went away
        with self._lock:
            if self._call is not call:  # replaced by follow(): the new stream's state is not ours
                return
            # Cached routes stay as they are: calls must not depend on the daemon while their route
            # is valid. The next stream's "synced" has them resolved again (changes may be missed).
            self._call, self.live = None, False
            self._retry_at = time.monotonic() + self.retry

    def follow(self, stub: Any, metadata: Any) -> None:
        """Watch through ``stub`` from now on (the client found its daemon again), at once: the new
        stream's "synced" has cached routes resolved again by the daemon that now answers."""
        with self._lock:
            old, self._call, self.live = self._call, None, False
            self.stub, self.metadata, self._retry_at = stub, metadata, 0.0
        if old is not None:
            old.cancel()
        self.ensure()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            call = self._call
        if call is not None:
            call.cancel()
