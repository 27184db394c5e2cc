"""Deployment state changes, pushed to the browser over jupyter_server's event bus.

One watcher per Jupyter server follows the daemon's ``Watch`` stream, and only while
a panel has asked for something recently, so a hidden or closed panel costs
nothing and any number of open panels share one stream. It starts with the first
request; the stream is read in a thread of its own, and its events are emitted on
the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import DeployError
from ._views import PanelAPI

SCHEMA_ID = "https://jupyter-deploy.dev/events/deployments/v1"
SCHEMA_PATH = Path(__file__).parent / "events" / "deployments.yaml"

log = logging.getLogger(__name__)


class StateWatcher:
    """Emits one event per deployment whose state changed, as the daemon pushes them.

    ``interval`` is how long it waits before watching again when the daemon does not
    answer. ``synced`` is set once the current states are known (and cleared while no
    stream runs).

    Example::

        watcher = StateWatcher(api, serverapp.event_logger)
        watcher.touch()        # (in a handler) a panel asked: watch for the next ``idle_after`` s
        watcher.stop()
    """

    def __init__(self, api: PanelAPI, event_logger: Any, interval: float = 1.0, idle_after: float = 30.0):
        self.api, self.event_logger = api, event_logger
        self.interval, self.idle_after = interval, idle_after
        self._last_request = 0.0
        self._states: dict[str, str] | None = None
        self._task: asyncio.Task | None = None
        self.synced = asyncio.Event()

    def touch(self) -> None:
        self._last_request = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def emit(self, deployment_id: str, state: str, action: str) -> None:
        self.event_logger.emit(schema_id=SCHEMA_ID,
                               data={"deployment_id": deployment_id, "state": state, "action": action})
        if self._states is not None:
            if state == "DELETED":
                self._states.pop(deployment_id, None)
            else:
                self._states[deployment_id] = state

    def _active_for(self) -> float:
        return self.idle_after - (time.monotonic() - self._last_request)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._active_for() > 0:
            done = loop.create_future()
            # A daemon thread, not asyncio.to_thread: a stream still open at shutdown must not
            # hold the server up until it times out.
            threading.Thread(target=self._follow, args=(loop, done), name="jupyter_deploy-watch",
                             daemon=True).start()
            if not await done:
                await asyncio.sleep(self.interval)
        self._states = None  # stale once we stop looking; start over without events
        self.synced.clear()

    def _follow(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future) -> None:
        """Read the stream until the panels go idle; resolve ``done`` with whether it ran."""
        ok = True
        try:
            initial: dict[str, str] = {}
            for event in self.api.watch(timeout=max(self._active_for(), 1.0)):
                if event.kind == "synced":
                    loop.call_soon_threadsafe(self._synced, initial)
                elif event.initial:
                    initial[event.deployment_id] = event.state
                else:
                    loop.call_soon_threadsafe(self._changed, event.deployment_id, event.state)
        except DeployError as e:
            log.debug("jupyter_deploy watcher: %s", e)
            ok = False
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(ok))

    def _synced(self, states: dict[str, str]) -> None:
        if self._states is not None:  # watching again: what changed while no stream ran
            for dep_id, state in states.items():
                if self._states.get(dep_id) != state:
                    self.emit(dep_id, state, "changed")
            for dep_id in self._states.keys() - states.keys():
                self.emit(dep_id, "DELETED", "changed")
        self._states = states
        self.synced.set()

    def _changed(self, deployment_id: str, state: str) -> None:
        if self._states is not None and self._states.get(deployment_id) != state:
            self.emit(deployment_id, state, "changed")
