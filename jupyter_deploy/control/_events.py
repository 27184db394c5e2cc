"""State changes pushed to watchers: the source of the ``Watch`` stream.

The store announces every committed change to a deployment or a replica,
whoever wrote it (``Store.on_change``). The bus turns each change into an event
carrying the resource's state as committed, adds a ``route`` event when the set
of replicas serving a deployment's version changes, and hands the events to
every subscriber whose filter takes them. A subscriber first gets the current
state (events with ``initial`` set) and then a ``synced`` event, so a watcher
that subscribes and then waits misses nothing.

Each open stream holds one of the daemon's threads (a synchronous gRPC server),
so the number of watchers is capped; a caller refused one polls instead.

Example::

    bus = EventBus(store)
    with bus.subscribe(WatchFilter(user_id="local", ids=frozenset({"echo"}))) as sub:
        for event in sub.current():
            print(event.kind, event.state)
        event = sub.next(timeout=1.0)    # None when nothing changed within a second
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from ..proto import control_pb2 as cpb
from ._errors import ControlError
from ._store import Change, Store, now

#: What a watcher may ask for; none named means all of them.
KINDS = ("deployment", "replica", "route")
#: The state of a resource that is gone (a deleted deployment, a removed replica).
DELETED = "DELETED"
#: Route states: some replica serves the deployment's version, or none does.
SERVING, NOT_SERVING = "SERVING", "NOT_SERVING"
#: Open Watch streams at once (each holds a daemon thread); more are refused.
MAX_WATCHERS = 64
#: Events a watcher may fall behind by before its stream ends (it watches again).
QUEUE_LIMIT = 10_000


class TooManyWatchers(ControlError):
    code = "RESOURCE_EXHAUSTED"


@dataclass(frozen=True)
class WatchFilter:
    """Which events a watcher gets: one user's (None: everyone's), of these kinds, of these deployments."""
    user_id: str | None
    kinds: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    def matches(self, event: cpb.Event) -> bool:
        return ((self.user_id is None or event.user_id == self.user_id)
                and (not self.kinds or event.kind in self.kinds)
                and (not self.ids or event.deployment_id in self.ids))


class Subscription:
    """One watcher's queue of events; ``closed`` once the bus stops or the watcher fell behind."""

    def __init__(self, bus: "EventBus", where: WatchFilter):
        self.bus, self.filter = bus, where
        self._queue: queue.Queue[cpb.Event | None] = queue.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bus._unsubscribe(self)

    def current(self) -> list[cpb.Event]:
        """The current state of what the filter takes, then a ``synced`` event."""
        return self.bus._snapshot(self.filter)

    def next(self, timeout: float) -> cpb.Event | None:
        """The next event, or None after ``timeout`` seconds without one (or once closed)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def wake(self) -> None:
        """Wake the reader (it then finds the stream ended)."""
        self.put(None)

    def put(self, event: cpb.Event | None) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.overflowed = True

    @property
    def closed(self) -> bool:
        return self.overflowed or self.bus.closed.is_set()


class EventBus:
    """Turns the store's committed changes into events for the subscribers."""

    def __init__(self, store: Store, max_watchers: int = MAX_WATCHERS):
        self.store = store
        self.max_watchers = max_watchers
        self.closed = threading.Event()
        self._subscribers: set[Subscription] = set()
        self._routes: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}  # last route event sent
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        store.on_change = self._changed

    def subscribe(self, where: WatchFilter) -> Subscription:
        with self._lock:
            if len(self._subscribers) >= self.max_watchers:
                raise TooManyWatchers(f"{self.max_watchers} watchers already; poll instead, or watch later")
            sub = Subscription(self, where)
            self._subscribers.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)
            if not self._subscribers:
                self._routes.clear()  # nobody to compare with: the next watcher starts from a snapshot

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self.closed.set()
        with self._lock:
            for sub in self._subscribers:
                sub.wake()

    # ------------------------------------------------------------ events

    def _changed(self, changes: list[Change]) -> None:
        """Store.on_change: runs under the store's lock, right after the commit."""
        with self._lock:
            if not self._subscribers:
                return
        events = [self._resource_event(*change) for change in changes]
        for user_id, deployment_id in dict.fromkeys((c[1], c[3]) for c in changes):
            route = self._route_event(user_id, deployment_id)
            if route is not None:
                events.append(route)
        with self._lock:
            for event in events:
                event.seq = next(self._seq)
                for sub in self._subscribers:
                    if sub.filter.matches(event):
                        sub.put(event)

    def _resource_event(self, kind: str, user_id: str, rid: str, deployment_id: str,
                        initial: bool = False) -> cpb.Event:
        event = cpb.Event(kind=kind, id=rid, user_id=user_id, deployment_id=deployment_id, time=now(),
                          initial=initial)
        if kind == "deployment":
            row = self.store.one("SELECT state, reason, version_id, desired FROM deployments "
                                 "WHERE user_id = ? AND id = ?", (user_id, rid))
            if row is None or row["desired"] == "deleted":
                event.state = DELETED
            else:
                event.state, event.reason, event.version_id = row["state"], row["reason"], row["version_id"]
        else:
            row = self.store.one("SELECT state, address, version_id FROM replicas WHERE id = ?", (rid,))
            if row is None:
                event.state = DELETED
            else:
                event.state, event.version_id = row["state"], row["version_id"]
                event.addresses.extend([row["address"]] if row["address"] else [])
        return event

    def _route_event(self, user_id: str, deployment_id: str, initial: bool = False) -> cpb.Event | None:
        """A route event when the replicas serving the deployment's version changed (or ``initial``)."""
        dep = self.store.one("SELECT version_id, desired FROM deployments WHERE user_id = ? AND id = ?",
                             (user_id, deployment_id))
        version_id = dep["version_id"] if dep is not None and dep["desired"] != "deleted" else ""
        addresses = tuple(sorted(r["address"] for r in self.store.query(
            "SELECT address FROM replicas WHERE user_id = ? AND deployment_id = ? AND version_id = ? "
            "AND state = 'READY' AND address IS NOT NULL", (user_id, deployment_id, version_id))))
        key = (user_id, deployment_id)
        with self._lock:
            if not initial and self._routes.get(key) == (version_id, addresses):
                return None
            self._routes[key] = (version_id, addresses)
        return cpb.Event(kind="route", id=deployment_id, user_id=user_id, deployment_id=deployment_id,
                         state=(DELETED if not version_id else SERVING if addresses else NOT_SERVING),
                         version_id=version_id, addresses=addresses, time=now(), initial=initial)

    def _snapshot(self, where: WatchFilter) -> list[cpb.Event]:
        sql, args = "SELECT user_id, id FROM deployments WHERE desired != 'deleted'", []
        if where.user_id is not None:
            sql, args = sql + " AND user_id = ?", [where.user_id]
        deployments = [(r["user_id"], r["id"]) for r in self.store.query(sql + " ORDER BY created_at", args)
                       if not where.ids or r["id"] in where.ids]
        events: list[cpb.Event] = []
        for user_id, deployment_id in deployments:
            events.append(self._resource_event("deployment", user_id, deployment_id, deployment_id, True))
            events.extend(self._resource_event("replica", user_id, r["id"], deployment_id, True)
                          for r in self.store.query("SELECT id FROM replicas WHERE user_id = ? AND "
                                                    "deployment_id = ? ORDER BY started_at",
                                                    (user_id, deployment_id)))
            route = self._route_event(user_id, deployment_id, initial=True)
            if route is not None:
                events.append(route)
        with self._lock:
            seq = next(self._seq)
        return [e for e in events if where.matches(e)] + [cpb.Event(kind="synced", seq=seq, time=now())]


def stream(sub: Subscription, is_active: Callable[[], bool], poll: float = 0.5) -> Iterator[cpb.Event]:
    """The subscription's current state, then its events, while the caller listens and the bus runs."""
    yield from sub.current()
    while is_active() and not sub.closed:
        event = sub.next(poll)
        if event is not None:
            yield event
    if sub.overflowed:
        raise TooManyWatchers(f"this watcher fell more than {QUEUE_LIMIT} events behind; watch again")
