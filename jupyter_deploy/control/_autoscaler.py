"""The local backend's autoscaler: how many replicas each deployment should run now.

The daemon is not on the request path, so the load comes from the runners: each
writes, every 0.2 s, its calls in flight averaged over that tick (``stats.json``,
see ``runner._telemetry``). Each scheduler pass asks ``wanted()``:

- ``need`` = the load summed over the READY replicas, over
  ``target_in_flight_per_replica``, rounded up, within [max(min_replicas, 1), max_replicas];
- when ``need`` stays above the wanted count for ``scale_up_delay_seconds``, the count goes
  up to it; below for ``scale_down_delay_seconds``, down to it;
- with ``min_replicas`` 0 and no call for ``scale_to_zero_delay_seconds``, the count goes to
  zero (the deployment is IDLE) until a call ``wake()``s it.

During a rollout, or while some replica does not report, the count holds. The counts live
in memory: after a daemon restart they are derived again from what runs (the replicas it
re-adopts, or none for an IDLE deployment), so nothing here needs to be stored.

Example::

    autoscaler = Autoscaler(home)
    wanted = autoscaler.wanted(dep_row, config, replica_rows)   # in the scheduler's pass
    autoscaler.wake(("local", "echo"), dep_row)                  # a call found no replica
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _autoscale as autoscale
from .. import _wire
from ._calllog import read_stats
from ._configs import deployment_spec

log = logging.getLogger("jupyter_deploy.autoscaler")

#: The deployment state of one scaled to zero (the scheduler sets it when ``wanted()`` is 0).
IDLE = "IDLE"


@dataclass
class _Scale:
    """The autoscaler's view of one deployment."""

    wanted: int                        # replicas of the current version to keep
    up_since: float | None = None      # monotonic: since when the load has called for more
    down_since: float | None = None    # monotonic: since when it has called for fewer
    active_at: float = 0.0             # epoch: the latest call, wake, or replica start seen
    woken_at: float | None = None      # monotonic: a call woke it from zero, no replica READY yet
    cold_start: float | None = None    # seconds the latest wake took (call -> a READY replica)
    load: float = 0.0                  # calls in flight over all replicas, averaged over the runners' last tick


class Autoscaler:
    """Wanted replica counts per deployment, from the load the runners report.

    Args:
        home: the control plane's home (the runners' ``telemetry/`` folder is under it).
    """

    def __init__(self, home: Path):
        self.home = Path(home)
        self._scale: dict[tuple[str, str], _Scale] = {}
        self._lock = threading.Lock()  # wake() comes from the router's threads, wanted() from the scheduler's
        self.active = False            # set by wanted() when some deployment's count may change

    def wanted(self, dep: Any, config: dict, replicas: list[Any], live: tuple[str, ...], ready_state: str) -> int:
        """How many replicas of ``dep``'s current version to keep (``replicas``: its rows; ``live``:
        the replica states that serve or will; ``ready_state``: the one that serves)."""
        key = (dep["user_id"], dep["id"])
        settings = autoscale.stored(config)
        lo, hi = settings["min_replicas"], settings["max_replicas"]
        self.active = self.active or autoscale.scales(settings)
        spec = deployment_spec(dep["version_id"], dep["config_json"])  # replicas of another are leaving
        current = [r for r in replicas if r["spec"] == spec and r["state"] in live]
        with self._lock:
            scale = self._scale.get(key)
            if scale is None:  # a new deployment, or a daemon restarted: what runs is what was wanted
                start = len(current) or (0 if dep["state"] == IDLE else 1)
                scale = self._scale[key] = _Scale(wanted=start, active_at=time.time())
            scale.wanted = min(max(scale.wanted, lo), hi)  # the limits may have changed
            ready = [r for r in current if r["state"] == ready_state]
            rollout = any(r["spec"] != spec and r["state"] in live for r in replicas)
            if scale.wanted == 0 or not ready or rollout or not autoscale.scales(settings):
                return scale.wanted
            load, busy = 0.0, False
            for r in ready:
                stats = read_stats(self.home, *key, r["id"])
                if stats is None:  # not reporting (yet): decide nothing on half the picture
                    return scale.wanted
                load += float(stats.get(_wire.STAT_AVG_IN_FLIGHT, 0.0))
                busy = busy or int(stats.get(_wire.STAT_IN_FLIGHT, 0)) > 0
                last = float(stats.get(_wire.STAT_LAST_REQUEST_AT, 0.0))
                scale.active_at = max(scale.active_at, last, r["started_at"])
            scale.load = load
            self._step(key, scale, settings, load)
            if lo == 0 and not busy and time.time() - scale.active_at >= settings["scale_to_zero_delay_seconds"]:
                log.info("deployment %s/%s: no call for %.0f s: scaling to zero", *key, time.time() - scale.active_at)
                scale.wanted, scale.up_since, scale.down_since = 0, None, None
            return scale.wanted

    def _step(self, key: tuple[str, str], scale: _Scale, settings: dict, load: float) -> None:
        lo, hi = settings["min_replicas"], settings["max_replicas"]
        need = min(max(math.ceil(load / settings["target_in_flight_per_replica"] - 1e-9), lo, 1), hi)
        now = time.monotonic()
        if need > scale.wanted:
            scale.down_since = None
            scale.up_since = now if scale.up_since is None else scale.up_since
            if now - scale.up_since >= settings["scale_up_delay_seconds"]:
                log.info("deployment %s/%s: %.1f calls in flight: scaling up from %d to %d replicas",
                         *key, load, scale.wanted, need)
                scale.wanted, scale.up_since = need, None
        elif need < scale.wanted:
            scale.up_since = None
            scale.down_since = now if scale.down_since is None else scale.down_since
            if now - scale.down_since >= settings["scale_down_delay_seconds"]:
                log.info("deployment %s/%s: %.1f calls in flight: scaling down from %d to %d replicas",
                         *key, load, scale.wanted, need)
                scale.wanted, scale.down_since = need, None
        else:
            scale.up_since = scale.down_since = None

    def wake(self, key: tuple[str, str], dep: Any) -> bool:
        """A call found no READY replica of ``dep`` (its row): if it is at zero, want a replica again.

        True when a replica is on its way because of a wake (this one or an earlier
        one): the caller should wait for it.
        """
        with self._lock:
            scale = self._scale.get(key)
            if scale is None and dep["state"] == IDLE:
                scale = self._scale[key] = _Scale(wanted=0)
            if scale is None:
                return False
            if scale.wanted == 0:
                settings = autoscale.stored(json.loads(dep["config_json"]))
                scale.wanted = max(1, settings["min_replicas"])
                scale.woken_at, scale.active_at = time.monotonic(), time.time()
                scale.up_since = scale.down_since = None
                log.info("deployment %s/%s: woken from zero by a call", *key)
            return scale.woken_at is not None

    def ready(self, key: tuple[str, str]) -> None:
        """A replica of the deployment became READY: a wake, if one was pending, took this long."""
        with self._lock:
            scale = self._scale.get(key)
            if scale is not None and scale.woken_at is not None:
                scale.cold_start, scale.woken_at = time.monotonic() - scale.woken_at, None

    def forget(self, key: tuple[str, str]) -> None:
        """The deployment stopped: started again, it starts afresh."""
        with self._lock:
            self._scale.pop(key, None)

    def status(self, key: tuple[str, str]) -> dict:
        """``{"wanted", "load", "last_cold_start_seconds"}`` ({} for a deployment not seen yet)."""
        with self._lock:
            scale = self._scale.get(key)
            if scale is None:
                return {}
            return {"wanted": scale.wanted, "load": round(scale.load, 3),
                    "last_cold_start_seconds": None if scale.cold_start is None else round(scale.cold_start, 3)}
