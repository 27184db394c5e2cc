"""Deployment state changes, pushed to the browser over jupyter_server's event bus.

One watcher per Jupyter server polls the daemon (one cheap ``List`` a second) only
while a panel has asked for something recently, so a hidden or closed panel costs
nothing, and any number of open panels cost one poll between them. It starts with
the first request, on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from ..errors import DeployError
from ._views import PanelAPI

SCHEMA_ID = "https://jupyter-deploy.dev/events/deployments/v1"
SCHEMA_PATH = Path(__file__).parent / "events" / "deployments.yaml"

log = logging.getLogger(__name__)


class StateWatcher:
    """Emits one event per deployment whose state changed since the last look.

    Example::

        watcher = StateWatcher(api, serverapp.event_logger, interval=1.0)
        watcher.touch()        # (in a handler) a panel asked: watch for the next ``idle_after`` s
        watcher.stop()
    """

    def __init__(self, api: PanelAPI, event_logger: Any, interval: float = 1.0, idle_after: float = 30.0):
        self.api, self.event_logger = api, event_logger
        self.interval, self.idle_after = interval, idle_after
        self._last_request = 0.0
        self._states: dict[str, str] | None = None
        self._task: asyncio.Task | None = None

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

    async def _run(self) -> None:
        while True:
            if time.monotonic() - self._last_request > self.idle_after:
                self._states = None  # stale once we stop looking; start over without events
            else:
                await self._look()
            await asyncio.sleep(self.interval)

    async def _look(self) -> None:
        try:
            states = await asyncio.to_thread(self.api.states)
        except DeployError as e:
            log.debug("jupyter_deploy watcher: %s", e)
            return
        if self._states is not None:
            for dep_id, state in states.items():
                if self._states.get(dep_id) != state:
                    self.emit(dep_id, state, "changed")
            for dep_id in self._states.keys() - states.keys():
                self.emit(dep_id, "DELETED", "changed")
        self._states = states
