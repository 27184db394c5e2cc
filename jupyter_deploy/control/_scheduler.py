"""The local backend: runner replicas as processes on this host, kept at their desired state.

A background thread reconciles, pass after pass (and at once on ``kick()``),
what the store asks for with what runs:

- a deployment that should run keeps the autoscaler's wanted number of READY
  replicas of its ``version_id`` (``_autoscaler``: between ``min_replicas`` and
  ``max_replicas``, from the calls in flight its runners report; zero, state
  IDLE, after ``scale_to_zero_delay_seconds`` without a call when
  ``min_replicas`` is 0, until a call ``wake()``s it). Each replica is ``python -m
  jupyter_deploy.runner`` with the version's recorded interpreter, in its own
  session (signals sent to a kernel's process group never reach it), its
  output appended to ``home/logs/<user>/<deployment>.log``;
- a replica becomes READY when its gRPC health answers SERVING; one that exits
  is restarted with exponential backoff, and too many crashes in a window mark
  the deployment FAILED with the exit code and the log's last lines;
- GPUs are reserved per replica (never one GPU for two replicas, across all
  deployments) and pinned with CUDA_VISIBLE_DEVICES; memory is reserved too,
  CPU may be overcommitted. A replica that does not fit waits, and the
  deployment says why;
- a new ``version_id`` rolls out: new replicas start, the route switches to
  them once they are all READY, the old ones drain for ``drain_seconds`` and
  stop. When a new replica cannot fit beside the old ones, old ones stop first.
  A change to the settings replicas start with (``_configs.RUNNER_KEYS``: batcher,
  transformer, secrets, interpreter, GPUs) rolls out the same way: each replica
  row keeps its ``spec`` (``_configs.replica_spec``), and one whose spec is not
  the deployment's counts as an old version's. A rollout that fails is rolled
  back to the version and settings the old replicas run;
- a stopped deployment's replicas get SIGTERM (SIGKILL after ``stop_timeout``);
  a deleted one's too, and then its row goes.

Every state change is one transaction. Replica rows are written before their
process starts, and each runner's command line names a port file under
``home/run/`` that holds its replica id, so a daemon restarted after SIGKILL
finds every runner it left: answering ones are re-adopted, the rest are killed
and started afresh.

Example::

    scheduler = Scheduler(store, detect(), home, registry.version_dir)
    scheduler.start()
    address, version_id = scheduler.route("local", "echo")   # once the deployment is RUNNING
    scheduler.stop(stop_runners=True)
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .._wire import TELEMETRY_ENV
from ._autoscaler import IDLE, Autoscaler
from ._calllog import replica_dir, write_logging_settings
from ._configs import deployment_spec, runner_args, runner_settings, with_runner_settings
from ._errors import FailedPrecondition, NotFound
from ._host_info import HostInfo
from ._resources import Needs, describe_gpus, eligible, needs_from, never_fits, runner_limit_args
from ._secrets import HINT_RE as SECRET_HINT_RE
from ._secrets import Secrets
from ._store import Store, now

log = logging.getLogger("jupyter_deploy.scheduler")

RUNNER_MODULE = "jupyter_deploy.runner"

# Replica states (the replicas.state column).
STARTING, READY, DRAINING, STOPPING, CRASHED = "STARTING", "READY", "DRAINING", "STOPPING", "CRASHED"
#: Replicas that serve or are meant to serve; the others are on their way out.
_LIVE = (STARTING, READY, CRASHED)
# Deployment states (besides STARTING and STOPPING; CREATING is set by whoever inserts the row).
RUNNING, UPDATING, STOPPED, FAILED = "RUNNING", "UPDATING", "STOPPED", "FAILED"
#: How a RUNNING deployment's reason starts after a failed rollout was rolled back.
ROLLBACK_PREFIX = "rollout failed"


class _Failed(Exception):
    """Raised by Scheduler._fail once a deployment is marked FAILED: its pass ends there."""


#: What one replica of a version asks for (see ``_resources``).
_VersionNeeds = Needs


class _Proc:
    """A runner process: one this scheduler started, or one re-adopted after a daemon restart."""

    def __init__(self, pid: int, marker: str, popen: subprocess.Popen | None = None):
        self.pid, self.marker, self.popen = pid, marker, popen
        self.stop_at: float | None = None  # when SIGTERM was sent

    def exit(self) -> str | None:
        """None while it runs; else how it ended."""
        if self.popen is not None:
            code = self.popen.poll()
            return None if code is None else _describe_exit(code)
        # Not our child, so no exit status: gone (or a zombie, whose cmdline is empty) is all we learn.
        return None if self.marker in _cmdline(self.pid) else "exit code unknown (re-adopted after a daemon restart)"

    def signal(self, sig: int) -> None:
        if self.exit() is not None:
            return  # its pid may already belong to another process
        try:
            # The runner leads its own session, so the group also reaches what the model started.
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


class Scheduler:
    """Starts, supervises, restarts and routes to runner replicas on this host.

    Args:
        store: the control plane's state (deployments, replicas, versions).
        host: this host's capacity (``_host_info.detect()``).
        home: the control plane's home folder (logs under ``logs/``, port files under ``run/``).
        version_dir: the folder of a version, by id (``Registry.version_dir``).
        crash_limit, crash_window: this many crashes within this many seconds mark a deployment FAILED.
        backoff, max_backoff: the first restart delay in seconds, doubling per crash up to the max.
        stop_timeout: seconds between SIGTERM and SIGKILL.
        interval: seconds between passes when nothing is changing (a pass runs at once on ``kick()``).
        log_max_bytes: a log file at least this large is rotated (the last two files are kept).

    Example::

        scheduler = Scheduler(store, detect(), home, registry.version_dir, crash_limit=3, backoff=0.05)
        scheduler.start()
        scheduler.kick()   # after a deployment changed
    """

    #: Seconds between passes while replicas are starting, draining or stopping.
    BUSY_INTERVAL = 0.05
    #: Seconds between passes at most while some deployment autoscales (its load is read each pass).
    AUTOSCALE_INTERVAL = 0.25
    #: Seconds a health check may take.
    HEALTH_TIMEOUT = 1.0
    #: Log lines put into a FAILED deployment's reason.
    REASON_LINES = 20

    def __init__(self, store: Store, host: HostInfo, home: Path, version_dir: Callable[[str], Path], *,
                 crash_limit: int = 5, crash_window: float = 300.0, backoff: float = 0.5,
                 max_backoff: float = 30.0, stop_timeout: float = 45.0, interval: float = 1.0,
                 log_max_bytes: int = 5 << 20):
        self.store, self.host, self.home, self.version_dir = store, host, Path(home), version_dir
        self.crash_limit, self.crash_window = crash_limit, crash_window
        self.backoff, self.max_backoff, self.stop_timeout = backoff, max_backoff, stop_timeout
        self.interval, self.log_max_bytes = interval, log_max_bytes
        self.run_dir = self.home / "run"
        self._marker_re = re.compile(re.escape(f"{self.run_dir}{os.sep}") + r"([0-9a-f]{12})\.port")
        self._procs: dict[str, _Proc] = {}                 # replica id -> process
        self._retry_at: dict[str, float] = {}              # CRASHED replica id -> restart time
        self._drain_until: dict[str, float] = {}           # DRAINING replica id -> SIGTERM time
        self._health: dict[str, tuple[grpc.Channel, Any]] = {}
        self._crashes: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)
        self._notes: dict[tuple[str, str], str] = {}       # the latest crash, shown as the reason
        self._failed_marks: dict[tuple[str, str], float] = {}  # updated_at of a FAILED deployment
        self._rollbacks: dict[tuple[str, str], tuple[str, str]] = {}  # -> (spec rolled back to, why)
        self._needs: dict[str, _VersionNeeds] = {}
        self._tested: set[str] = set()                     # versions whose test() passed
        self._testing: dict[str, str] = {}                 # version id -> the replica running test()
        self._round_robin: dict[tuple[str, str], Iterator[int]] = {}
        self._logging: dict[tuple[str, str], str] = {}    # inference logger settings last written
        self.autoscaler = Autoscaler(self.home)            # wanted replicas per deployment, from the load
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Re-adopt or replace the runners a previous daemon left, then reconcile in the background."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="jupyter_deploy-scheduler", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Reconcile now rather than at the next interval (after a deployment changed)."""
        self._wake.set()

    def stop(self, stop_runners: bool = True) -> None:
        """Stop reconciling; with ``stop_runners``, also stop every replica and forget it.

        Without it the runners keep serving, and the next ``start()`` (of this or
        a new daemon) re-adopts them.
        """
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if stop_runners:
            for proc in self._procs.values():
                proc.signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while any(p.exit() is None for p in self._procs.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            for proc in self._procs.values():
                proc.signal(signal.SIGKILL)
                if proc.popen is not None:
                    proc.popen.wait()
            with self.store.tx() as db:
                db.execute("DELETE FROM replicas")
            self._procs.clear()
        for channel, _ in self._health.values():
            channel.close()
        self._health.clear()

    # ------------------------------------------------------------ routing and logs

    def route(self, user_id: str, deployment_id: str) -> tuple[str, str]:
        """``(address, version_id)`` of a READY replica, taken in turn; FailedPrecondition when none is.

        During a rollout the old version serves until every new replica is READY.

        Example::

            scheduler.route("local", "echo")  # ('127.0.0.1:40123', 'v-3f2a...')
        """
        dep, pool = self._pool(user_id, deployment_id)
        if not pool:
            why = f": {dep['reason']}" if dep["reason"] else ""
            raise FailedPrecondition(f"deployment {deployment_id} is {dep['state']}{why}")
        counter = self._round_robin.setdefault((user_id, deployment_id), itertools.count())
        replica = pool[next(counter) % len(pool)]
        return replica["address"], replica["version_id"]

    def addresses(self, user_id: str, deployment_id: str, version_id: str) -> list[str]:
        """Every READY replica of ``version_id`` that ``route`` chooses from, for a client to spread calls over."""
        try:
            pool = self._pool(user_id, deployment_id)[1]
        except NotFound:
            return []
        return [r["address"] for r in pool if r["version_id"] == version_id]

    def _pool(self, user_id: str, deployment_id: str) -> tuple[Any, list[Any]]:
        """The deployment's row and the READY replicas calls go to: during a rollout those of the old
        spec, until the switch (when they become DRAINING); else the current ones."""
        dep = self.store.one("SELECT state, reason, version_id, config_json FROM deployments WHERE user_id = ? "
                             "AND id = ? AND desired != 'deleted'", (user_id, deployment_id))
        if dep is None:
            raise NotFound(f"deployment {deployment_id!r} not found for user {user_id!r}")
        ready = self.store.query("SELECT address, version_id, spec FROM replicas WHERE user_id = ? AND "
                                 "deployment_id = ? AND state = ? AND address IS NOT NULL ORDER BY started_at, id",
                                 (user_id, deployment_id, READY))
        spec = _spec(dep)
        old = [r for r in ready if r["spec"] != spec]
        return dep, old or ready

    def wake(self, user_id: str, deployment_id: str) -> bool:
        """A call found no READY replica: start one if the deployment scaled to zero.

        True when a replica is on its way because of a wake (the caller should wait
        for it); False for a deployment stopped, failed, or starting for another reason.

        Example::

            if scheduler.wake("local", "echo"):
                ...  # poll route() until a replica serves
        """
        dep = self.store.one("SELECT state, desired, config_json FROM deployments WHERE user_id = ? AND id = ?",
                             (user_id, deployment_id))
        if dep is None or dep["desired"] != "running" or dep["state"] in (FAILED, STOPPED):
            return False
        waking = self.autoscaler.wake((user_id, deployment_id), dep)
        self.kick()
        return waking

    def scale_status(self, user_id: str, deployment_id: str) -> dict:
        """What the autoscaler wants and saw: ``{"wanted", "load", "last_cold_start_seconds"}``."""
        return self.autoscaler.status((user_id, deployment_id))

    def logs(self, user_id: str, deployment_id: str, lines: int = 200) -> list[str]:
        """The last ``lines`` lines its replicas wrote (stdout and stderr), oldest first.

        Example::

            print("\\n".join(scheduler.logs("local", "echo", 20)))
        """
        path = self._log_path(user_id, deployment_id)
        out = _tail(path, lines)
        if len(out) < lines:
            out = _tail(_rotated(path), lines - len(out)) + out
        return out

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while not self._halt.is_set():
            self.autoscaler.active = False
            try:
                busy = self._pass()
            except Exception:
                log.exception("scheduler pass failed; retrying")
                busy = True
            idle = min(self.interval, self.AUTOSCALE_INTERVAL) if self.autoscaler.active else self.interval
            self._wake.wait(self.BUSY_INTERVAL if busy else idle)
            self._wake.clear()

    def _pass(self) -> bool:
        """One reconcile of every deployment; True while something is on its way somewhere."""
        for dep in self.store.query("SELECT * FROM deployments ORDER BY created_at"):
            try:
                self._reconcile(dep)
            except Exception:
                # One broken deployment must not keep the others from their desired state.
                log.exception("deployment %s/%s: reconcile failed", dep["user_id"], dep["id"])
        rows = self.store.query("SELECT id, state FROM replicas")
        for rid in set(self._procs) - {r["id"] for r in rows}:
            # Its row went (a deployment removed behind our back): nothing would ever stop it.
            self._procs.pop(rid).signal(signal.SIGKILL)
            self._forget(rid)
        return any(r["state"] != READY for r in rows)

    def _reconcile(self, dep: Any) -> None:
        key = (dep["user_id"], dep["id"])
        if dep["desired"] in ("stopped", "deleted"):
            self.autoscaler.forget(key)
            self._crashes.pop(key, None)
            self._notes.pop(key, None)
            self._failed_marks.pop(key, None)
            replicas = self._observe(dep, leaving=True)
            self._stop_all(replicas)
            if replicas:
                self._set_state(dep, STOPPING, "")
            elif dep["desired"] == "deleted":
                with self.store.tx() as db:
                    db.execute("DELETE FROM deployments WHERE user_id = ? AND id = ?", key)
            else:
                self._set_state(dep, STOPPED, "")
            return
        # Before any replica starts: runners read the inference logger's settings from this file.
        self._logging[key] = write_logging_settings(self.home, *key, json.loads(dep["config_json"]),
                                                    self._logging.get(key))
        try:
            self._keep_running(dep, self._observe(dep))
        except _Failed:
            pass  # the deployment is FAILED and its replicas are stopping

    def _keep_running(self, dep: Any, replicas: list[Any]) -> None:
        key = (dep["user_id"], dep["id"])
        if dep["state"] == FAILED:
            mark = self._failed_marks.setdefault(key, dep["updated_at"])
            if mark == dep["updated_at"]:
                self._stop_all(replicas)  # stays FAILED until the deployment is started or updated again
                return
            del self._failed_marks[key]
            self._crashes.pop(key, None)
            self._notes.pop(key, None)
        self._converge(dep, replicas)

    # ------------------------------------------------------------ observing replicas

    def _observe(self, dep: Any, leaving: bool = False) -> list[Any]:
        """Bring the deployment's replica rows up to date with their processes; return the rows.

        With ``leaving`` (the deployment is being stopped) an exit is no crash.
        """
        for r in self._replicas(dep):
            rid, proc = r["id"], self._procs.get(r["id"])
            if r["state"] == CRASHED:
                continue
            ended = proc.exit() if proc is not None else "its process is unknown to this daemon"
            if ended is not None:
                if leaving or r["state"] in (DRAINING, STOPPING):
                    self._remove(rid)
                else:
                    self._crashed(dep, r, ended)
            elif r["state"] == STARTING:
                self._check_starting(r)
            elif r["state"] == DRAINING and time.monotonic() >= self._drain_until.get(rid, 0):
                self._stop(r)
            elif r["state"] == STOPPING and proc.stop_at is not None and \
                    time.monotonic() - proc.stop_at >= self.stop_timeout:
                proc.signal(signal.SIGKILL)
        return self._replicas(dep)

    def _check_starting(self, r: Any) -> None:
        address = r["address"]
        if address is None:
            port = _read_port(self._port_file(r["id"]))
            if port is None:
                return
            address = f"127.0.0.1:{port}"
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET address = ? WHERE id = ?", (address, r["id"]))
        if self._check_health(r["id"], address) == health_pb2.HealthCheckResponse.SERVING:
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (READY, r["id"]))
            self.autoscaler.ready((r["user_id"], r["deployment_id"]))  # W4 from IDLE, as the status shows it
            if self._testing.get(r["version_id"]) == r["id"]:
                self._tested.add(r["version_id"])
                del self._testing[r["version_id"]]

    def _check_health(self, rid: str, address: str) -> int | None:
        """The runner's health status, or None when it does not answer."""
        if rid not in self._health:
            channel = grpc.insecure_channel(address)
            self._health[rid] = (channel, health_pb2_grpc.HealthStub(channel))
        try:
            return self._health[rid][1].Check(health_pb2.HealthCheckRequest(service=""),
                                              timeout=self.HEALTH_TIMEOUT).status
        except grpc.RpcError:
            return None

    def _crashed(self, dep: Any, r: Any, ended: str) -> None:
        key = (dep["user_id"], dep["id"])
        self._procs.pop(r["id"], None)
        log.warning("deployment %s/%s: replica %s %s", *key, r["id"], ended)
        if r["spec"] != _spec(dep):
            self._remove(r["id"])  # an old version's (or old settings') replica, leaving anyway
            return
        crashes = self._crashes[key]
        crashes.append(time.monotonic())
        while crashes and crashes[0] < time.monotonic() - self.crash_window:
            crashes.popleft()
        if len(crashes) >= self.crash_limit:
            tail = "\n".join(self.logs(*key, lines=self.REASON_LINES))
            self._fail(dep, f"replica crashed {len(crashes)} times within {self.crash_window:g} s; the last "
                            f"one ended with {ended}. Last log lines:\n{tail}")
        delay = min(self.max_backoff, self.backoff * 2 ** (len(crashes) - 1))
        self._retry_at[r["id"]] = time.monotonic() + delay
        self._notes[key] = f"replica {r['id']} ended with {ended}; restarting in {delay:g} s"
        self._close_health(r["id"])
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET state = ?, pid = NULL, address = NULL, restarts = restarts + 1 "
                       "WHERE id = ?", (CRASHED, r["id"]))

    # ------------------------------------------------------------ converging

    def _converge(self, dep: Any, replicas: list[Any]) -> None:
        """Start, restart, switch and retire replicas towards the wanted number READY of version_id."""
        key = (dep["user_id"], dep["id"])
        cfg = json.loads(dep["config_json"])
        wanted = self.autoscaler.wanted(dep, cfg, replicas, _LIVE, READY)
        drain = float(cfg.get("drain_seconds", 5))
        try:
            needs = self._version_needs(dep["version_id"])
        except LookupError as e:
            self._fail(dep, str(e))
        gpus_each = int(cfg.get("resources", {}).get("num_accelerators", needs.num_accelerators))
        impossible = self._never_fits(gpus_each, needs)
        if impossible:
            self._fail(dep, impossible)

        spec = _spec(dep)
        current = [r for r in replicas if r["spec"] == spec and r["state"] in _LIVE]
        old = [r for r in replicas if r["spec"] != spec and r["state"] in _LIVE]
        # Fewer wanted than there are (scaled down, min_replicas lowered): retire the least useful first.
        current.sort(key=lambda r: (r["state"] == READY, r["started_at"]), reverse=True)
        for r in current[wanted:]:
            self._retire(r, drain)
        current = current[:wanted]

        for r in current:
            if r["state"] == CRASHED and time.monotonic() >= self._retry_at.get(r["id"], 0):
                self._spawn(dep, r["id"], r["version_id"], r["gpus"])
        waiting = ""
        for _ in range(wanted - len(current)):
            gpus, waiting = self._allocate(dep, gpus_each, needs)
            if gpus is None:
                old = self._make_room(dep, gpus_each, needs, replicas, old, drain)
                break
            self._new_replica(dep, gpus)

        replicas = self._replicas(dep)
        ready = [r for r in replicas if r["spec"] == spec and r["state"] == READY]
        if old and len(ready) >= wanted:
            for r in old:  # the switch: route() now sends every call to the new version
                self._retire(r, drain)
            replicas = self._replicas(dep)
        leaving_version = any(r["spec"] != spec for r in replicas)
        if leaving_version:
            state = UPDATING
        elif wanted == 0:
            state = IDLE
            self._notes.pop(key, None)
        elif len(ready) >= wanted:
            state = RUNNING
            self._notes.pop(key, None)
        else:
            state = STARTING
        self._set_state(dep, state, self._rollback_note(dep) if state in (RUNNING, IDLE)
                        else waiting or self._notes.get(key, ""))

    def _rollback_note(self, dep: Any) -> str:
        """Why a RUNNING deployment serves an older version than asked, until it is updated again."""
        key = (dep["user_id"], dep["id"])
        spec, note = self._rollbacks.get(key, ("", ""))
        if spec != _spec(dep):
            self._rollbacks.pop(key, None)
            return ""
        return note

    def _make_room(self, dep: Any, count: int, needs: _VersionNeeds, replicas: list[Any], old: list[Any],
                   drain: float) -> list[Any]:
        """Retire old-version replicas, one at a time, until a new replica would fit; return those left.

        Only when the new one fits once they are gone, and never while replicas
        already leaving would free enough.
        """
        leaving = {r["id"] for r in replicas if r["state"] in (DRAINING, STOPPING)}

        def fits(ignore: set[str]) -> bool:
            return self._allocate(dep, count, needs, ignore)[0] is not None

        if fits(leaving) or not fits(leaving | {r["id"] for r in old}):
            return old
        for r in old:
            self._retire(r, drain)
            leaving.add(r["id"])
            if fits(leaving):
                break
        return [r for r in old if r["id"] not in leaving]

    def _allocate(self, dep: Any, count: int, needs: _VersionNeeds,
                  ignore: Collection[str] = ()) -> tuple[str | None, str]:
        """``(gpus, "")`` for one more replica (comma-separated indices), or ``(None, why it must wait)``."""
        rows = [r for r in self.store.query("SELECT id, user_id, deployment_id, version_id, gpus FROM replicas")
                if r["id"] not in ignore]
        holders: dict[int, str] = {}
        for r in rows:
            name = r["deployment_id"] if r["user_id"] == dep["user_id"] else f"{r['user_id']}/{r['deployment_id']}"
            for index in _gpu_list(r["gpus"]):
                holders[index] = name
        usable = [g.index for g in eligible(self.host.gpus, needs)]
        free = [i for i in usable if i not in holders]
        if len(free) < count:
            users = ", ".join(sorted({holders[i] for i in usable if i in holders}))
            if not free:
                return None, f"waiting for {describe_gpus(count, needs)}: all {len(usable)} in use by {users}"
            return None, (f"waiting for {describe_gpus(count, needs)}: only {len(free)} of {len(usable)} free "
                          f"(the others are in use by {users})")
        if needs.memory:
            reserved = sum(self._version_needs(r["version_id"]).memory for r in rows)
            if reserved + needs.memory > self.host.memory:
                return None, (f"waiting for {_gib(needs.memory)} of memory: {_gib(reserved)} of "
                              f"{_gib(self.host.memory)} is reserved by running replicas")
        return ",".join(str(i) for i in free[:count]), ""

    def _never_fits(self, count: int, needs: _VersionNeeds) -> str:
        """Why one replica can never fit on this host, or ""."""
        return never_fits(count, needs, self.host)

    def _version_needs(self, version_id: str) -> _VersionNeeds:
        if version_id not in self._needs:
            row = self.store.one("SELECT config_json, python FROM versions WHERE id = ?", (version_id,))
            if row is None:
                raise LookupError(f"version {version_id} no longer exists")
            self._needs[version_id] = needs_from(json.loads(row["config_json"] or "{}"), python=row["python"])
        return self._needs[version_id]

    # ------------------------------------------------------------ starting

    def _new_replica(self, dep: Any, gpus: str) -> None:
        rid = uuid.uuid4().hex[:12]
        # The row first: a daemon killed right after the spawn still finds the runner through it.
        with self.store.tx() as db:
            db.execute("INSERT INTO replicas (id, user_id, deployment_id, version_id, gpus, state, started_at, "
                       "spec, settings_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (rid, dep["user_id"], dep["id"], dep["version_id"], gpus, STARTING, now(), _spec(dep),
                        json.dumps(runner_settings(json.loads(dep["config_json"])))))
        self._spawn(dep, rid, dep["version_id"], gpus)

    def _spawn(self, dep: Any, rid: str, version_id: str, gpus: str) -> None:
        key = (dep["user_id"], dep["id"])
        port_file = self._port_file(rid)
        port_file.unlink(missing_ok=True)
        needs = self._version_needs(version_id)
        cfg = json.loads(dep["config_json"])
        notes = []
        wanted = cfg.get("python") or needs.python  # the deployment's choice, else the uploading interpreter
        python = shutil.which(wanted)
        if python is None:
            notes.append(f"the interpreter {wanted} is missing or not executable; using the daemon's "
                         f"{sys.executable}")
            log.warning("deployment %s/%s: %s", *key, notes[-1])
            python = sys.executable
        try:
            model_path = self.version_dir(version_id)
        except Exception as e:  # noqa: BLE001 - a missing or damaged blob: this version cannot serve
            self._fail(dep, f"cannot prepare version {version_id}: {e}")
        try:  # the deployment's secrets: their values go into the runner's environment and nowhere else
            secret_env = Secrets(self.home / "secrets").environment(dep["user_id"], cfg.get("secrets") or [])
        except NotFound as e:  # never start without one: wait (STARTING, the reason names it), retry soon
            self._notes[key] = e.message
            self._retry_at[rid] = time.monotonic() + 1.0
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ?, pid = NULL, address = NULL WHERE id = ?", (CRASHED, rid))
            return
        if SECRET_HINT_RE.match(self._notes.get(key, "")):
            del self._notes[key]
        # test() runs on one replica per version, until one passed it (unless the deployment says not to).
        wants_test = cfg.get("run_test", True) and version_id not in self._tested
        tester = self._testing.setdefault(version_id, rid) if wants_test else None
        cmd = [python, "-m", RUNNER_MODULE, "--model-path", str(model_path), "--address", "127.0.0.1:0",
               "--port-file", str(port_file), *(["--run-test"] if tester == rid else []), *runner_args(cfg),
               *runner_limit_args(needs)]
        env = {**os.environ, **secret_env, "MODEL_PATH": str(model_path), "MODEL_VERSION": version_id,
               "DEPLOYMENT_ID": dep["id"], "JUPYTER_DEPLOY_SIGNING_KEY": dep["signing_key"],
               "CUDA_VISIBLE_DEVICES": gpus, "PYTHONUNBUFFERED": "1",
               TELEMETRY_ENV: str(replica_dir(self.home, *key, rid))}
        with self._open_log(*key) as out:
            for note in notes:
                out.write(f"jupyter_deploy scheduler: {note}\n".encode())
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} replica {rid} of version {version_id} "
                      f"starting (GPUs: {gpus or 'none'}) ---\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
            except OSError as e:
                out.write(f"jupyter_deploy scheduler: cannot start {python}: {e}\n".encode())
                replica = self.store.one("SELECT * FROM replicas WHERE id = ?", (rid,))
                self._crashed(dep, replica, f"a start failure ({e})")
                return
        self._procs[rid] = _Proc(popen.pid, str(port_file), popen)
        self._retry_at.pop(rid, None)
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET pid = ?, address = NULL, state = ?, started_at = ? WHERE id = ?",
                       (popen.pid, STARTING, now(), rid))

    # ------------------------------------------------------------ stopping

    def _retire(self, r: Any, drain: float) -> None:
        """Take a replica out of service: a READY one drains first, others stop now."""
        if r["state"] == READY:
            self._drain_until[r["id"]] = time.monotonic() + drain
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (DRAINING, r["id"]))
        else:
            self._stop(r)

    def _stop(self, r: Any) -> None:
        proc = self._procs.get(r["id"])
        if proc is None:  # CRASHED: nothing runs
            self._remove(r["id"])
            return
        if proc.stop_at is None:
            proc.stop_at = time.monotonic()
            proc.signal(signal.SIGTERM)
        if r["state"] != STOPPING:
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (STOPPING, r["id"]))

    def _stop_all(self, replicas: list[Any]) -> None:
        for r in replicas:
            self._stop(r)

    def _fail(self, dep: Any, reason: str) -> NoReturn:
        """Mark the deployment FAILED and stop its replicas; raises _Failed to end its pass.

        In a rollout whose previous version still has ready replicas, roll back
        instead: a new version that cannot come up must not take the working one down.
        """
        key = (dep["user_id"], dep["id"])
        replicas = self._replicas(dep)
        spec = _spec(dep)
        previous = [r for r in replicas if r["spec"] != spec and r["state"] == READY]
        if previous:
            what = "version" if previous[0]["version_id"] != dep["version_id"] else "settings"
            note = f"{ROLLBACK_PREFIX}; still serving the previous {what}: {reason}"
            log.error("deployment %s/%s: %s", *key, note)
            self._stop_all([r for r in replicas if r["spec"] == spec])
            # Back to what the old replicas run: their version, and the settings they started with.
            config = with_runner_settings(json.loads(dep["config_json"]), json.loads(previous[0]["settings_json"]))
            with self.store.tx() as db:
                db.execute("UPDATE deployments SET version_id = ?, config_json = ?, state = ?, reason = ? "
                           "WHERE user_id = ? AND id = ?",
                           (previous[0]["version_id"], json.dumps(config), RUNNING, note, *key))
            self._rollbacks[key] = (previous[0]["spec"], note)
            self._crashes.pop(key, None)
            raise _Failed(reason)
        log.error("deployment %s/%s FAILED: %s", *key, reason)
        self._failed_marks[key] = dep["updated_at"]
        self._set_state(dep, FAILED, reason)
        self._stop_all(self._replicas(dep))
        raise _Failed(reason)

    def _remove(self, rid: str) -> None:
        with self.store.tx() as db:
            db.execute("DELETE FROM replicas WHERE id = ?", (rid,))
        self._procs.pop(rid, None)
        self._forget(rid)

    def _forget(self, rid: str) -> None:
        for version_id, tester in list(self._testing.items()):
            if tester == rid:  # it left before passing test(): the next replica of that version runs it
                del self._testing[version_id]
        self._retry_at.pop(rid, None)
        self._drain_until.pop(rid, None)
        self._close_health(rid)
        self._port_file(rid).unlink(missing_ok=True)

    def _close_health(self, rid: str) -> None:
        if rid in self._health:
            self._health.pop(rid)[0].close()

    # ------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Re-adopt the runners a previous daemon left that still answer; kill the rest, drop their rows."""
        found = {}
        for pid, cmdline in _processes():
            match = self._marker_re.search(cmdline)
            if match and RUNNER_MODULE in cmdline:
                found[match.group(1)] = pid
        for r in self.store.query("SELECT * FROM replicas"):
            pid = found.pop(r["id"], None)
            if pid is not None and r["state"] in (STARTING, READY) and self._adopt(r, pid):
                continue
            if pid is not None:
                _Proc(pid, str(self._port_file(r["id"]))).signal(signal.SIGKILL)
            self._remove(r["id"])
        for rid, pid in found.items():  # ours, but its row is gone
            _Proc(pid, str(self._port_file(rid))).signal(signal.SIGKILL)
            self._forget(rid)

    def _adopt(self, r: Any, pid: int) -> bool:
        port = _read_port(self._port_file(r["id"]))
        if port is None:
            return False
        if not r["spec"]:
            # Started by a daemon from before replica specs, which never rolled settings out: take it
            # to run its version with the deployment's current settings.
            dep = self.store.one("SELECT config_json FROM deployments WHERE user_id = ? AND id = ?",
                                 (r["user_id"], r["deployment_id"]))
            if dep is not None:
                with self.store.tx() as db:
                    db.execute("UPDATE replicas SET spec = ?, settings_json = ? WHERE id = ?",
                               (deployment_spec(r["version_id"], dep["config_json"]),
                                json.dumps(runner_settings(json.loads(dep["config_json"]))), r["id"]))
        address = f"127.0.0.1:{port}"
        status = self._check_health(r["id"], address)
        if status is None:
            self._close_health(r["id"])
            return False
        state = READY if status == health_pb2.HealthCheckResponse.SERVING else STARTING
        if state == READY:
            self._tested.add(r["version_id"])
        self._procs[r["id"]] = _Proc(pid, str(self._port_file(r["id"])))
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET pid = ?, address = ?, state = ? WHERE id = ?",
                       (pid, address, state, r["id"]))
        log.info("re-adopted replica %s of %s/%s (pid %d, %s)", r["id"], r["user_id"], r["deployment_id"],
                 pid, state)
        return True

    # ------------------------------------------------------------ helpers

    def _replicas(self, dep: Any) -> list[Any]:
        return self.store.query("SELECT * FROM replicas WHERE user_id = ? AND deployment_id = ? "
                                "ORDER BY started_at, id", (dep["user_id"], dep["id"]))

    def _set_state(self, dep: Any, state: str, reason: str) -> None:
        # ``dep`` was read at the start of this pass, and only this thread writes states.
        if (dep["state"], dep["reason"]) != (state, reason):
            with self.store.tx() as db:
                db.execute("UPDATE deployments SET state = ?, reason = ? WHERE user_id = ? AND id = ?",
                           (state, reason, dep["user_id"], dep["id"]))

    def _port_file(self, rid: str) -> Path:
        return self.run_dir / f"{rid}.port"

    def _log_path(self, user_id: str, deployment_id: str) -> Path:
        return self.home / "logs" / user_id / f"{deployment_id}.log"

    def _open_log(self, user_id: str, deployment_id: str) -> Any:
        path = self._log_path(user_id, deployment_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Rotated at each start: replicas still running keep writing to the file they
        # opened, which is fine, since logs() reads both files.
        if path.exists() and path.stat().st_size >= self.log_max_bytes:
            os.replace(path, _rotated(path))
        return open(path, "ab")


def _spec(dep: Any) -> str:
    """The spec a deployment row asks its replicas to run (``_configs.replica_spec``)."""
    return deployment_spec(dep["version_id"], dep["config_json"])


def _rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file ([] when it is missing), read from the end."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as f:
            data, pos = b"", f.seek(0, os.SEEK_END)
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(pos, 64 << 10)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    text = data.decode(errors="replace").splitlines()
    return text[-lines:]


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _gpu_list(gpus: str) -> list[int]:
    return [int(i) for i in gpus.split(",") if i]


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


#: The runner's exit code when its resident memory went over its cpu_memory cap (runner._limits).
EXIT_OUT_OF_MEMORY = 5


def _describe_exit(code: int) -> str:
    if code == EXIT_OUT_OF_MEMORY:
        return "out of memory (its resident memory went over inference_compute_info.cpu_memory)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" when it is gone)."""
    if _HAS_PROC:
        try:
            return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _processes() -> Iterator[tuple[int, str]]:
    """``(pid, command line)`` of every process in sight."""
    if _HAS_PROC:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                yield int(entry.name), _cmdline(int(entry.name))
        return
    out = subprocess.run(["ps", "-axo", "pid=,command="], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        pid, _, cmdline = line.strip().partition(" ")
        yield int(pid), cmdline


_HAS_PROC = Path("/proc/self/cmdline").exists()
