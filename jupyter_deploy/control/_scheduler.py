"""The scheduler: runner replicas kept at their deployments' desired state, on their nodepools' backends.

A background thread reconciles, pass after pass (and at once on ``kick()``),
what the store asks for with what runs:

- a deployment that should run keeps the autoscaler's wanted number of READY
  replicas of its ``version_id`` (``_autoscaler``: between ``min_replicas`` and
  ``max_replicas``, from the calls in flight its runners report; zero, state
  IDLE, after ``scale_to_zero_delay_seconds`` without a call when
  ``min_replicas`` is 0, until a call ``wake()``s it). Each replica is a runner
  of the version, with the version's recorded interpreter, started by the
  backend of the deployment's compute cluster (``_backends``: ``local`` runs
  processes on this host), its output appended to the deployment's log
  (``_replica_logs``);
- a replica becomes READY when its gRPC health answers SERVING; one that exits
  is restarted with exponential backoff, and too many crashes in a window mark
  the deployment FAILED with the exit code and the log's last lines. A runner
  whose model raised (its import, ``load_model``, ``test``) records the exception
  (``runner._telemetry.write_failure``): before any replica of the deployment's
  version and settings served, that fails the deployment at once with it (no
  retry: it would raise again), the structured exception kept beside the reason;
- GPUs are reserved per replica (``_placement``: never one GPU for two replicas,
  across all deployments) and pinned with CUDA_VISIBLE_DEVICES; memory and CPU
  are reserved too, so the host never runs more replicas than it holds. A replica
  that does not fit waits, and the deployment says why. A pass starts at most
  ``MAX_STARTS_PER_PASS`` replicas, so it stays short and a stop, a delete or the
  daemon's own stop is acted on within a pass whatever a deployment asks for;
- a new ``version_id`` rolls out: new replicas start, the route switches to
  them once they are all READY, the old ones drain for ``drain_seconds`` and
  stop. When a new replica cannot fit beside the old ones, old ones stop first.
  A change to the settings replicas start with (``_configs.RUNNER_KEYS``: batcher,
  transformer, secrets, interpreter, GPUs) rolls out the same way: each replica
  row keeps its ``spec`` (``_configs.replica_spec``), and one whose spec is not
  the deployment's counts as an old version's. A rollout that fails is rolled
  back to the version and settings the old replicas run;
- a stopped deployment's replicas drain (the backend's ``drain``: SIGTERM) and
  are stopped after ``stop_timeout`` (``stop``: SIGKILL), or ``STARTING_GRACE``
  for one that never served; a deleted one's too, and then its row goes;
- a new version that changes only method bodies may instead be swapped into the running
  replicas, their loaded state kept (``_hot``: planned by ``Compute.update``, carried out
  here, from a thread of its own, while the deployment is UPDATING);
- a runner gets its deployment's public route key (never the private one: ``_tokens``),
  and where the daemon is root it runs as its owner's OS user (the admin's excepted, by
  default), from its owner's copy of the version (``_sandbox``).

The scheduler decides and keeps the state (SQLite, and ``_Replica`` and
``_Deployment`` between passes); it reaches replicas only through the
``NodepoolBackend`` interface. Every state change is one transaction. Replica
rows are written before their replica starts, and a backend names each replica
it runs by its row id, so a daemon restarted after SIGKILL finds every replica
it left (``list_running``): answering ones are re-adopted, the rest are stopped
and started afresh.

Example::

    scheduler = Scheduler(store, detect(), home, registry.version_dir)
    scheduler.start()
    address, version_id = scheduler.route("local", "echo")   # once the deployment is RUNNING
    scheduler.stop(stop_runners=True)
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .. import _tokens
from .._wire import ENVS_ENV, TELEMETRY_ENV, VERIFY_KEY_ENV
from ..errors import failure_reason
from ._auth import server_secret
from ._autoscaler import IDLE, Autoscaler
from ._backends import Backends, Health, NodepoolBackend, ReplicaHandle, ReplicaSpec, StartFailed
from ._calllog import forget_failure, replica_dir, take_failure, write_logging_settings
from ._configs import deployment_spec, runner_args, runner_settings, with_runner_settings
from ._errors import FailedPrecondition, InvalidArgument, NotFound
from ._host_info import HostInfo
from ._hot import HotReloads, Plan
from ._interpreters import Interpreters
from ._placement import Placement, gpu_list
from ._replica_logs import DEFAULT_MAX_BYTES, LogFile
from ._resources import Needs, runner_limit_args
from ._sandbox import Sandboxes
from ._secrets import HINT_RE as SECRET_HINT_RE
from ._secrets import Secrets
from ._store import Store, now

log = logging.getLogger("jupyter_deploy.scheduler")

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


@dataclass
class _Replica:
    """What the scheduler keeps about one replica between passes (its row holds the rest)."""

    #: The backend running it and its handle there; None while nothing runs (CRASHED, or not started).
    backend: NodepoolBackend | None = None
    handle: ReplicaHandle | None = None
    #: CRASHED: when to start it again.
    retry_at: float = 0.0
    #: DRAINING: when its drain ends and it is stopped.
    drain_until: float = 0.0
    #: STOPPING: when it was asked to drain (``stop`` follows ``grace`` seconds later).
    stop_at: float | None = None
    grace: float = 0.0
    #: Its same-host ipc endpoint once read ("" none), for routes (``addresses``).
    ipc: str | None = None


@dataclass
class _Deployment:
    """What the scheduler keeps about one deployment between passes."""

    #: When its replicas crashed lately (the crash window).
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    #: The latest crash or wait, shown as the reason while it starts.
    note: str = ""
    #: ``updated_at`` of the row when it was marked FAILED: it stays FAILED until that changes.
    failed_mark: str | None = None
    #: ``(spec rolled back to, why)`` after a failed rollout.
    rollback: tuple[str, str] | None = None
    #: The inference logger settings last written for its runners.
    logging: str | None = None
    #: FAILED because its backend could not be reached: it starts again once it can.
    outage: bool = False

    def forget_failures(self) -> None:
        self.crashes.clear()
        self.note = ""
        self.failed_mark = None
        self.outage = False


class Scheduler:
    """Starts, supervises, restarts and routes to runner replicas, through their nodepools' backends.

    Args:
        store: the control plane's state (deployments, replicas, versions).
        host: this host's capacity (``_host_info.detect()``), which GPUs and memory are reserved from.
        home: the control plane's home folder (replica logs under ``logs/``).
        version_dir: the folder of a version, by id (``Registry.version_dir``).
        backends: the backend of a compute cluster, by its config (``_backends.Backends``, the
            default); the same instance for clusters that share a target.
        crash_limit, crash_window: this many crashes within this many seconds mark a deployment FAILED.
        backoff, max_backoff: the first restart delay in seconds, doubling per crash up to the max.
        stop_timeout: seconds between asking a replica to drain (SIGTERM) and stopping it (SIGKILL).
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
    #: Log lines put into a FAILED deployment's reason.
    REASON_LINES = 20
    #: Replicas one pass starts at most, over all deployments (the next pass, a moment later, starts
    #: more): each start is a process, and a pass must stay short to see stops and deletes.
    MAX_STARTS_PER_PASS = 8
    #: Seconds a replica that never served gets between SIGTERM and SIGKILL (no call is in flight
    #: there; a model still loading may not look at signals until it is done).
    STARTING_GRACE = 1.0
    #: Seconds ``stop()`` waits for the pass under way to end.
    STOP_JOIN = 2.0

    def __init__(self, store: Store, host: HostInfo, home: Path, version_dir: Callable[[str], Path], *,
                 backends: Callable[[dict], NodepoolBackend] | None = None, crash_limit: int = 5,
                 crash_window: float = 300.0, backoff: float = 0.5, max_backoff: float = 30.0,
                 stop_timeout: float = 45.0, interval: float = 1.0, log_max_bytes: int = DEFAULT_MAX_BYTES,
                 route_keys: _tokens.RouteKeys | None = None, sandboxes: Sandboxes | None = None,
                 on_ready: Callable[[str, str], None] = lambda version_id, address: None,
                 interpreters: Interpreters | None = None):
        self.store, self.host, self.home, self.version_dir = store, host, Path(home), version_dir
        # Runners get the public half of their deployment's route key (derived, never stored).
        self.route_keys = route_keys or _tokens.RouteKeys(server_secret(self.home))
        self.sandboxes = sandboxes or Sandboxes(store, self.home)  # an OS user per owner, where root
        #: Told ``(version_id, address)`` of each replica that turns READY; must not block.
        self.on_ready = on_ready
        #: Checked again before each start: the admin may have allowed fewer since they were named.
        self.interpreters = interpreters or Interpreters(self.home)
        self.backends = backends or Backends(self.home, host)
        self.crash_limit, self.crash_window = crash_limit, crash_window
        self.backoff, self.max_backoff, self.stop_timeout = backoff, max_backoff, stop_timeout
        self.interval, self.log_max_bytes = interval, log_max_bytes
        self._runtime: dict[str, _Replica] = {}       # replica id -> what runs, and its timers
        self._deployments: dict[tuple[str, str], _Deployment] = {}
        self.placement = Placement(store, host)           # GPUs and memory per replica
        self._tested: set[str] = set()                     # versions whose test() passed
        self._testing: dict[str, str] = {}                 # version id -> the replica running test()
        # Read and advanced by route() on the service's threads, hence apart from _Deployment.
        self._round_robin: dict[tuple[str, str], Iterator[int]] = {}
        self.autoscaler = Autoscaler(self.home)            # wanted replicas per deployment, from the load
        #: Hot reloads planned (by Compute.update) and under way.
        self.hot = HotReloads(store, version_dir, self.sandboxes, self.route_keys, self.kick)
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._starts_left = self.MAX_STARTS_PER_PASS  # in the current pass
        self._stopped = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Re-adopt or replace the replicas a previous daemon left, then reconcile in the background."""
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="jupyter_deploy-scheduler", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Reconcile now rather than at the next interval (after a deployment changed)."""
        self._wake.set()

    def halt(self) -> None:
        """Start no more replicas and end the pass under way soon (the daemon is stopping)."""
        self._halt.set()
        self._wake.set()

    def stop(self, stop_runners: bool = True, grace: float | None = None) -> None:
        """Stop reconciling; with ``stop_runners``, also stop every replica and forget it.

        Replicas get ``grace`` seconds (default ``stop_timeout``) between SIGTERM and
        SIGKILL. Without ``stop_runners`` the runners keep serving, and the next
        ``start()`` (of this or a new daemon) re-adopts them. A second call does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        self.halt()
        if self._thread is not None:
            # A pass checks the halt between replicas; one stuck in a backend call is left behind (a
            # daemon thread) rather than holding the stop: what it starts late, the next start stops.
            self._thread.join(self.STOP_JOIN)
        running = [run for run in list(self._runtime.values()) if run.handle is not None]
        if stop_runners:
            grace = self.stop_timeout if grace is None else grace
            for run in running:
                if run.stop_at is None:
                    run.backend.drain(run.handle, grace)
            deadline = time.monotonic() + grace
            while any(run.backend.poll(run.handle) is None for run in running) and time.monotonic() < deadline:
                time.sleep(0.05)
            for run in running:
                run.backend.stop(run.handle)
            with self.store.tx() as db:
                db.execute("DELETE FROM replicas")
            self._runtime.clear()
        for backend in {id(run.backend): run.backend for run in running}.values():
            backend.close()

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

    def ipc_addresses(self, user_id: str, deployment_id: str, addresses: list[str]) -> list[str]:
        """The same-host ipc endpoint of the READY replica at each of ``addresses`` ("" where none)."""
        try:
            pool = self._pool(user_id, deployment_id)[1]
        except NotFound:
            return [""] * len(addresses)
        by_address = {}
        for r in pool:
            run = self._runtime.get(r["id"])
            if run is None or run.backend is None or run.handle is None:
                continue
            if run.ipc is None:
                run.ipc = run.backend.ipc_address(run.handle)
            by_address[r["address"]] = run.ipc
        return [by_address.get(a, "") for a in addresses]

    def _pool(self, user_id: str, deployment_id: str) -> tuple[Any, list[Any]]:
        """The deployment's row and the READY replicas calls go to: during a rollout those of the old
        spec, until the switch (when they become DRAINING); else the current ones."""
        dep = self.store.one("SELECT state, reason, version_id, config_json FROM deployments WHERE user_id = ? "
                             "AND id = ? AND desired != 'deleted'", (user_id, deployment_id))
        if dep is None:
            raise NotFound(f"deployment {deployment_id!r} not found for user {user_id!r}")
        ready = self.store.query("SELECT id, address, version_id, spec FROM replicas WHERE user_id = ? AND "
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

    def can_reload(self, dep: Any) -> bool:
        """Whether the backend of the deployment row's compute cluster can hot reload (``_hot``)."""
        row = self.store.one("SELECT config_json FROM compute_clusters WHERE user_id = ? AND id = ?",
                             (dep["user_id"], dep["compute_cluster_id"]))
        try:
            return bool(self.backends(json.loads(row["config_json"] or "{}") if row else {}).can_reload)
        except FailedPrecondition:
            return False

    def scale_status(self, user_id: str, deployment_id: str) -> dict:
        """What the autoscaler wants and saw: ``{"wanted", "load", "last_cold_start_seconds"}``."""
        return self.autoscaler.status((user_id, deployment_id))

    def logs(self, user_id: str, deployment_id: str, lines: int = 200) -> list[str]:
        """The last ``lines`` lines its replicas wrote (stdout and stderr), oldest first.

        Example::

            print("\\n".join(scheduler.logs("local", "echo", 20)))
        """
        return self._log(user_id, deployment_id).tail(lines)

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
        self._starts_left = self.MAX_STARTS_PER_PASS
        for dep in self.store.query("SELECT * FROM deployments ORDER BY created_at"):
            if self._halt.is_set():
                return False
            try:
                self._reconcile(dep)
            except Exception:
                # One broken deployment must not keep the others from their desired state.
                log.exception("deployment %s/%s: reconcile failed", dep["user_id"], dep["id"])
        rows = self.store.query("SELECT id, state FROM replicas")
        for rid in set(self._runtime) - {r["id"] for r in rows}:
            # Its row went (a deployment removed behind our back): nothing would ever stop it.
            self._forget(rid)
        return any(r["state"] != READY for r in rows)

    def _reconcile(self, dep: Any) -> None:
        key = (dep["user_id"], dep["id"])
        if dep["desired"] in ("stopped", "deleted"):
            self.hot.drop(key)  # (a swap under way may finish; its outcome is not applied)
            self.autoscaler.forget(key)
            self._deployment(key).forget_failures()
            replicas = self._observe(dep, leaving=True)
            self._stop_all(replicas)
            if replicas:
                self._set_state(dep, STOPPING, "")
            elif dep["desired"] == "deleted":
                with self.store.tx() as db:
                    db.execute("DELETE FROM deployments WHERE user_id = ? AND id = ?", key)
                self._deployments.pop(key, None)
                self._log(*key).remove()  # its replicas have ended: nothing writes there any more
            else:
                self._set_state(dep, STOPPED, "")
            return
        if dep["state"] == "CREATING" and not self._replicas(dep):
            # New: a log left by an earlier deployment of this id (deleted under an older daemon) goes.
            self._log(*key).remove()
        # Before any replica starts: runners read the inference logger's settings from this file.
        state = self._deployment(key)
        state.logging = write_logging_settings(self.home, *key, json.loads(dep["config_json"]), state.logging)
        try:
            self._keep_running(dep, self._observe(dep))
        except _Failed:
            pass  # the deployment is FAILED and its replicas are stopping

    def _keep_running(self, dep: Any, replicas: list[Any]) -> None:
        state = self._deployment((dep["user_id"], dep["id"]))
        if dep["state"] == FAILED:
            if state.failed_mark is None:
                state.failed_mark = dep["updated_at"]
            if state.failed_mark == dep["updated_at"] and not (state.outage and not self._backend(dep).outage()):
                # Stays FAILED until the deployment is started or updated again, or, failed by an
                # outage of its cluster, until the cluster answers again.
                self._stop_all(replicas)
                return
            state.forget_failures()
        self._converge(dep, replicas)

    # ------------------------------------------------------------ observing replicas

    def _observe(self, dep: Any, leaving: bool = False) -> list[Any]:
        """Bring the deployment's replica rows up to date with their processes; return the rows.

        With ``leaving`` (the deployment is being stopped) an exit is no crash.
        """
        for r in self._replicas(dep):
            rid, run = r["id"], self._runtime.get(r["id"])
            if r["state"] == CRASHED or self._halt.is_set():
                continue
            if run is None or run.handle is None:
                ended = "its process is unknown to this daemon"
            else:
                ended = run.backend.poll(run.handle)
            if ended is not None:
                if leaving or r["state"] in (DRAINING, STOPPING):
                    self._remove(rid)
                else:
                    self._crashed(dep, r, ended)
            elif r["state"] == STARTING:
                self._check_starting(r, run)
            elif r["state"] == DRAINING and time.monotonic() >= run.drain_until:
                self._stop(r)
            elif r["state"] == STOPPING and run.stop_at is not None and \
                    time.monotonic() - run.stop_at >= run.grace:
                run.backend.stop(run.handle)  # its grace is over
        return self._replicas(dep)

    def _check_starting(self, r: Any, run: _Replica) -> None:
        address = r["address"]
        if address is None:
            address = run.backend.address(run.handle)
            if address is None:
                return
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET address = ? WHERE id = ?", (address, r["id"]))
        if run.backend.health(run.handle) is Health.SERVING:
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (READY, r["id"]))
            self.autoscaler.ready((r["user_id"], r["deployment_id"]))  # W4 from IDLE, as the status shows it
            self.on_ready(r["version_id"], address)
            if self._testing.get(r["version_id"]) == r["id"]:
                self._tested.add(r["version_id"])
                del self._testing[r["version_id"]]

    def _crashed(self, dep: Any, r: Any, ended: str) -> None:
        key = (dep["user_id"], dep["id"])
        run = self._runtime.setdefault(r["id"], _Replica())
        self._release(run)
        failure = take_failure(self.home, *key, r["id"])
        log.warning("deployment %s/%s: replica %s %s", *key, r["id"], ended)
        if r["spec"] != _spec(dep):
            self._remove(r["id"])  # an old version's (or old settings') replica, leaving anyway
            return
        if failure is not None and not self._serves(dep):
            # The model's own error before this version ever served: a restart would raise it again.
            self._fail(dep, failure_reason(failure), failure)
        state = self._deployment(key)
        crashes = state.crashes
        crashes.append(time.monotonic())
        while crashes and crashes[0] < time.monotonic() - self.crash_window:
            crashes.popleft()
        if failure is not None:  # a later replica's load_model() failed (a download, memory): retried
            ended = f"{ended}: {failure_reason(failure).splitlines()[0]}"
        if len(crashes) >= self.crash_limit:
            if failure is not None:
                self._fail(dep, f"replica failed {len(crashes)} times within {self.crash_window:g} s; the last "
                                f"one: {failure_reason(failure)}", failure)
            tail = "\n".join(self.logs(*key, lines=self.REASON_LINES))
            self._fail(dep, f"replica crashed {len(crashes)} times within {self.crash_window:g} s; the last "
                            f"one ended with {ended}. Last log lines:\n{tail}")
        delay = min(self.max_backoff, self.backoff * 2 ** (len(crashes) - 1))
        run.retry_at = time.monotonic() + delay
        state.note = f"replica {r['id']} ended with {ended}; restarting in {delay:g} s"
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET state = ?, pid = NULL, address = NULL, restarts = restarts + 1 "
                       "WHERE id = ?", (CRASHED, r["id"]))

    # ------------------------------------------------------------ converging

    def _converge(self, dep: Any, replicas: list[Any]) -> None:
        """Start, restart, switch and retire replicas towards the wanted number READY of version_id."""
        key = (dep["user_id"], dep["id"])
        cfg = json.loads(dep["config_json"])
        replicas = self._hot_reload(dep, cfg, replicas)
        if replicas is None:
            return  # a hot reload is under way: its replicas serve as they are
        wanted = self.autoscaler.wanted(dep, cfg, replicas, _LIVE, READY)
        backend = self._backend(dep)
        outage = backend.outage()
        if outage:
            self._deployment(key).outage = True
            self._fail(dep, outage)
        drain = float(cfg.get("drain_seconds", 5))
        try:
            needs = self.placement.needs(dep["version_id"])
        except LookupError as e:
            self._fail(dep, str(e))
        gpus_each = int(cfg.get("resources", {}).get("num_accelerators", needs.num_accelerators))
        # A backend that places replicas itself (Ray) was asked at create_deployment; a node that
        # leaves its cluster may come back, so what fits no node now waits there.
        impossible = "" if backend.places_replicas else self.placement.never_fits(gpus_each, needs)
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
            run = self._runtime.setdefault(r["id"], _Replica())
            if r["state"] == CRASHED and time.monotonic() >= run.retry_at and self._may_start():
                self._starts_left -= 1
                self._spawn(dep, backend, r["id"], r["version_id"], r["gpus"])
        waiting = ""
        for _ in range(wanted - len(current)):
            if not self._may_start():
                break  # the next pass starts more
            gpus, waiting = ("", "") if backend.places_replicas else \
                self.placement.allocate(dep["user_id"], gpus_each, needs)
            if gpus is None:
                old = self._make_room(dep, gpus_each, needs, replicas, old, drain)
                break
            self._starts_left -= 1
            self._new_replica(dep, backend, gpus)

        replicas = self._replicas(dep)
        if backend.places_replicas and not waiting:
            waiting = self._placing(replicas)
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
            self._deployment(key).note = ""
        elif len(ready) >= wanted:
            state = RUNNING
            self._deployment(key).note = ""
        else:
            state = STARTING
        self._set_state(dep, state, self._rollback_note(dep) if state in (RUNNING, IDLE)
                        else waiting or self._deployment(key).note)

    def _placing(self, replicas: list[Any]) -> str:
        """Why a starting replica is not placed yet, as its backend says (Ray: no node has room), or ""."""
        for r in replicas:
            run = self._runtime.get(r["id"])
            if r["state"] == STARTING and r["address"] is None and run is not None and run.handle is not None:
                why = run.backend.waiting(run.handle)
                if why:
                    return why
        return ""

    def _hot_reload(self, dep: Any, cfg: dict, replicas: list[Any]) -> list[Any] | None:
        """Carry the deployment's hot reload on, if it has one (``_hot``): start it, wait for it, or apply
        its outcome. None while it is under way (the pass leaves the replicas alone); else the
        replicas to converge, which an ordinary rollout of the new version then replaces."""
        key = (dep["user_id"], dep["id"])
        plan = self.hot.get(key)
        if plan is None:
            return replicas
        spec = _spec(dep)
        if plan.thread is None:
            if spec == plan.from_spec:
                return replicas  # the update that planned it has not committed yet
            if spec != plan.to_spec:
                self.hot.drop(key, plan)  # updated again (or rolled back) since
                return replicas
            live = [r for r in replicas if r["state"] in _LIVE]
            backend = self._backend(dep)
            why = ("no replica is running any more" if not live else
                   "" if all(r["spec"] == plan.from_spec and r["state"] == READY and
                             self._runtime.get(r["id"], _Replica()).handle is not None for r in live)
                   else "its replicas changed before the swap began")
            if why:
                self._hot_fallback(dep, plan, why, required=plan.required and bool(live))
                return replicas
            targets = [(r["id"], backend, self._runtime[r["id"]].handle) for r in live]
            self.hot.start(dep, plan, targets, run_test=bool(cfg.get("run_test", True))
                           and plan.to_version not in self._tested)
            log.info("deployment %s/%s: hot reload to version %s (%s) in %d replica(s)", *key, plan.to_version,
                     plan.what, len(targets))
        if not plan.done:
            self._set_state(dep, UPDATING, f"hot reload: swapping the new code into {plan.replicas} "
                                           f"replica{'s' if plan.replicas != 1 else ''} ({plan.what})")
            return None
        self.hot.drop(key, plan)
        if spec != plan.to_spec:
            return replicas  # updated again meanwhile: the ordinary rollout takes it from here
        if plan.failed:
            self.hot.note(key, plan.to_version, False, f"hot reload failed: {plan.failed.splitlines()[0]}")
            self._fail(dep, f"hot reload failed on {plan.failed}")  # rolls back to the old version
        if not plan.swapped:
            self._hot_fallback(dep, plan, plan.unreachable, required=plan.required)
            return replicas
        self.hot.apply(plan)
        if plan.tested:
            self._tested.add(plan.to_version)
        if plan.first_address:
            self.on_ready(plan.to_version, plan.first_address)  # the description, from the swapped code
        log.info("deployment %s/%s: hot reload to version %s done in %d of %d replica(s)", *key, plan.to_version,
                 len(plan.swapped), plan.replicas)
        return self._replicas(dep)

    def _hot_fallback(self, dep: Any, plan: Plan, why: str, required: bool) -> None:
        """A planned hot reload cannot go on: roll out new replicas instead, or (``required``) roll back."""
        key = (dep["user_id"], dep["id"])
        self.hot.drop(key, plan)
        log.warning("deployment %s/%s: no hot reload to version %s: %s", *key, plan.to_version, why)
        self.hot.note(key, plan.to_version, False, f"hot reload impossible: {why}")
        if required:
            self._fail(dep, f"hot reload impossible (hot reload was required): {why}")

    def _rollback_note(self, dep: Any) -> str:
        """Why a RUNNING deployment serves an older version than asked, until it is updated again."""
        state = self._deployment((dep["user_id"], dep["id"]))
        spec, note = state.rollback or ("", "")
        if spec != _spec(dep):
            state.rollback = None
            return ""
        return note

    def _make_room(self, dep: Any, count: int, needs: Needs, replicas: list[Any], old: list[Any],
                   drain: float) -> list[Any]:
        """Retire old-version replicas, one at a time, until a new replica would fit; return those left.

        Only when the new one fits once they are gone, and never while replicas
        already leaving would free enough.
        """
        leaving = {r["id"] for r in replicas if r["state"] in (DRAINING, STOPPING)}

        def fits(ignore: set[str]) -> bool:
            return self.placement.allocate(dep["user_id"], count, needs, ignore)[0] is not None

        if fits(leaving) or not fits(leaving | {r["id"] for r in old}):
            return old
        for r in old:
            self._retire(r, drain)
            leaving.add(r["id"])
            if fits(leaving):
                break
        return [r for r in old if r["id"] not in leaving]

    # ------------------------------------------------------------ starting

    def _may_start(self) -> bool:
        """Whether this pass may start one more replica (each start counts down ``_starts_left``)."""
        return not self._halt.is_set() and self._starts_left > 0

    def _backend(self, dep: Any) -> NodepoolBackend:
        """The backend of the deployment's compute cluster; its pass ends FAILED when there is none."""
        row = self.store.one("SELECT config_json FROM compute_clusters WHERE user_id = ? AND id = ?",
                             (dep["user_id"], dep["compute_cluster_id"]))
        try:
            return self.backends(json.loads(row["config_json"] or "{}") if row else {})
        except FailedPrecondition as e:
            self._fail(dep, e.message)

    def _new_replica(self, dep: Any, backend: NodepoolBackend, gpus: str) -> None:
        rid = uuid.uuid4().hex[:12]
        # The row first: a daemon killed right after the start still finds the replica through it.
        with self.store.tx() as db:
            db.execute("INSERT INTO replicas (id, user_id, deployment_id, version_id, gpus, state, started_at, "
                       "spec, settings_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (rid, dep["user_id"], dep["id"], dep["version_id"], gpus, STARTING, now(), _spec(dep),
                        json.dumps(runner_settings(json.loads(dep["config_json"])))))
        self._spawn(dep, backend, rid, dep["version_id"], gpus)

    def _spawn(self, dep: Any, backend: NodepoolBackend, rid: str, version_id: str, gpus: str) -> None:
        key = (dep["user_id"], dep["id"])
        state, run = self._deployment(key), self._runtime.setdefault(rid, _Replica())
        needs = self.placement.needs(version_id)
        cfg = json.loads(dep["config_json"])
        # What the deployment asks for: its own GPU count, where it sets one.
        needs = dataclasses.replace(needs, num_accelerators=int(cfg.get("resources", {}).get(
            "num_accelerators", needs.num_accelerators)))
        pool = self.store.one("SELECT config_json FROM nodepools WHERE user_id = ? AND compute_cluster_id = ? "
                              "AND id = ?", (dep["user_id"], dep["compute_cluster_id"], dep["nodepool_id"]))
        try:
            model_path = self.version_dir(version_id)
        except Exception as e:  # noqa: BLE001 - a missing or damaged blob: this version cannot serve
            self._fail(dep, f"cannot prepare version {version_id}: {e}")
        telemetry = replica_dir(self.home, *key, rid)
        try:  # where the daemon is root: the owner's OS user, its copy of the version, its folders
            sandbox = self.sandboxes.for_user(dep["user_id"])
            if sandbox is not None:
                model_path = sandbox.version(version_id, model_path)
                sandbox.hand_over(telemetry)
        except (OSError, FailedPrecondition) as e:
            self._fail(dep, f"cannot prepare the sandbox of user {dep['user_id']}'s runners: "
                            f"{getattr(e, 'message', None) or e}")
        try:  # the deployment's secrets: their values go into the runner's environment and nowhere else
            secret_env = Secrets(self.home / "secrets").environment(dep["user_id"], cfg.get("secrets") or [])
        except NotFound as e:  # never start without one: wait (STARTING, the reason names it), retry soon
            state.note = e.message
            run.retry_at = time.monotonic() + 1.0
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ?, pid = NULL, address = NULL WHERE id = ?", (CRASHED, rid))
            return
        if SECRET_HINT_RE.match(state.note):
            state.note = ""
        # test() runs on one replica per version, until one passed it (unless the deployment says not to).
        wants_test = cfg.get("run_test", True) and version_id not in self._tested
        tester = self._testing.setdefault(version_id, rid) if wants_test else None
        spec = ReplicaSpec(
            replica_id=rid, user_id=dep["user_id"], deployment_id=dep["id"], version_id=version_id,
            model_path=model_path,
            python=self._interpreter(dep, cfg, needs),
            args=(*(["--run-test"] if tester == rid else []), *runner_args(cfg), *runner_limit_args(needs)),
            env={**secret_env, "MODEL_PATH": str(model_path), "MODEL_VERSION": version_id,
                 "DEPLOYMENT_ID": dep["id"], VERIFY_KEY_ENV: self.route_keys.public(dep["signing_key"]).hex(),
                 "CUDA_VISIBLE_DEVICES": gpus, TELEMETRY_ENV: str(telemetry),
                 ENVS_ENV: str(sandbox.envs if sandbox is not None else self.home / "envs")},
            gpus=tuple(gpu_list(gpus)), resources=needs, log=self._log(*key),
            run_as=sandbox.run_as if sandbox is not None else None, nodepool_id=dep["nodepool_id"],
            nodepool=json.loads(pool["config_json"] or "{}") if pool else {})
        forget_failure(self.home, *key, rid)  # one a previous run of this replica left
        try:
            handle = backend.start(spec)
        except StartFailed as e:
            self._crashed(dep, self.store.one("SELECT * FROM replicas WHERE id = ?", (rid,)), str(e))
            return
        self._runtime[rid] = _Replica(backend, handle)
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET pid = ?, address = NULL, state = ?, started_at = ? WHERE id = ?",
                       (handle.pid, STARTING, now(), rid))

    def _interpreter(self, dep: Any, cfg: dict, needs: Needs) -> str:
        """The deployment's interpreter, else the version's (its uploader's), if whoever named it may."""
        named, by = (cfg["python"], dep["user_id"]) if cfg.get("python") else (needs.python, dep["model_user_id"])
        try:  # one that is gone is the backend's to replace (with its own, saying so)
            return self.interpreters.check(named, by, "the interpreter", exists=False)
        except InvalidArgument as e:
            self._fail(dep, e.message)

    # ------------------------------------------------------------ stopping

    def _retire(self, r: Any, drain: float) -> None:
        """Take a replica out of service: a READY one drains first, others stop now."""
        if r["state"] == READY:
            self._runtime.setdefault(r["id"], _Replica()).drain_until = time.monotonic() + drain
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (DRAINING, r["id"]))
        else:
            self._stop(r)

    def _stop(self, r: Any) -> None:
        """Drain a replica and mark it STOPPING; ``_observe`` stops it after ``stop_timeout``."""
        run = self._runtime.get(r["id"])
        if run is None or run.handle is None:  # CRASHED: nothing runs
            self._remove(r["id"])
            return
        if run.stop_at is None:
            run.stop_at = time.monotonic()
            # One that never served has no call to finish: it need not keep its resources long.
            run.grace = self.stop_timeout if r["state"] in (READY, DRAINING) else \
                min(self.stop_timeout, self.STARTING_GRACE)
            run.backend.drain(run.handle, run.grace)
        if r["state"] != STOPPING:
            with self.store.tx() as db:
                db.execute("UPDATE replicas SET state = ? WHERE id = ?", (STOPPING, r["id"]))

    def _stop_all(self, replicas: list[Any]) -> None:
        for r in replicas:
            self._stop(r)

    def _fail(self, dep: Any, reason: str, failure: dict | None = None) -> NoReturn:
        """Mark the deployment FAILED and stop its replicas; raises _Failed to end its pass.

        In a rollout whose previous version still has ready replicas, roll back
        instead: a new version that cannot come up must not take the working one down.
        ``failure``: the model's own exception (``take_failure``), kept beside the reason.
        """
        key = (dep["user_id"], dep["id"])
        failure_json = json.dumps(failure) if failure else ""
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
                db.execute("UPDATE deployments SET version_id = ?, config_json = ?, state = ?, reason = ?, "
                           "failure_json = ? WHERE user_id = ? AND id = ?",
                           (previous[0]["version_id"], json.dumps(config), RUNNING, note, failure_json, *key))
            state = self._deployment(key)
            state.rollback = (previous[0]["spec"], note)
            state.crashes.clear()
            raise _Failed(reason)
        log.error("deployment %s/%s FAILED: %s", *key, reason)
        self._deployment(key).failed_mark = dep["updated_at"]
        with self.store.tx() as db:
            db.execute("UPDATE deployments SET state = ?, reason = ?, failure_json = ? WHERE user_id = ? AND id = ?",
                       (FAILED, reason, failure_json, *key))
        self._stop_all(self._replicas(dep))
        raise _Failed(reason)

    def _remove(self, rid: str) -> None:
        with self.store.tx() as db:
            db.execute("DELETE FROM replicas WHERE id = ?", (rid,))
        self._forget(rid)

    def _forget(self, rid: str) -> None:
        """Stop what still runs of a replica whose row is gone, and drop what is kept about it."""
        for version_id, tester in list(self._testing.items()):
            if tester == rid:  # it left before passing test(): the next replica of that version runs it
                del self._testing[version_id]
        run = self._runtime.pop(rid, None)
        if run is not None:
            self._release(run)

    @staticmethod
    def _release(run: _Replica) -> None:
        """Hand a replica's handle back to its backend (``stop``: ended, or ended now)."""
        if run.handle is not None:
            run.backend.stop(run.handle)
        run.backend = run.handle = None
        run.stop_at = None

    # ------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Re-adopt the replicas a previous daemon left that still answer; stop the rest, drop their rows."""
        found: dict[str, tuple[NodepoolBackend, ReplicaHandle]] = {}
        for backend in self._cluster_backends():
            for handle in backend.list_running():
                found[handle.replica_id] = (backend, handle)
        for r in self.store.query("SELECT * FROM replicas"):
            hit = found.pop(r["id"], None)
            if hit is not None and r["state"] in (STARTING, READY) and self._adopt(r, *hit):
                continue
            if hit is not None:
                hit[0].stop(hit[1])
            self._remove(r["id"])
        for backend, handle in found.values():  # ours, but its row is gone
            backend.stop(handle)

    def _cluster_backends(self) -> list[NodepoolBackend]:
        """The backend of every compute cluster in the store that has one, each once."""
        found: dict[int, NodepoolBackend] = {}
        for row in self.store.query("SELECT config_json FROM compute_clusters"):
            try:
                backend = self.backends(json.loads(row["config_json"] or "{}"))
            except FailedPrecondition:
                continue  # a provider with no backend runs nothing
            found[id(backend)] = backend
        return list(found.values())

    def _adopt(self, r: Any, backend: NodepoolBackend, handle: ReplicaHandle) -> bool:
        address = backend.address(handle)
        if address is None:
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
        health = backend.health(handle)
        if health is Health.SILENT:
            return False
        state = READY if health is Health.SERVING else STARTING
        if state == READY:
            self._tested.add(r["version_id"])
        self._runtime[r["id"]] = _Replica(backend, handle)
        with self.store.tx() as db:
            db.execute("UPDATE replicas SET pid = ?, address = ?, state = ? WHERE id = ?",
                       (handle.pid, address, state, r["id"]))
        log.info("re-adopted replica %s of %s/%s (pid %s, %s)", r["id"], r["user_id"], r["deployment_id"],
                 handle.pid, state)
        return True

    # ------------------------------------------------------------ helpers

    def _replicas(self, dep: Any) -> list[Any]:
        return self.store.query("SELECT * FROM replicas WHERE user_id = ? AND deployment_id = ? "
                                "ORDER BY started_at, id", (dep["user_id"], dep["id"]))

    def _serves(self, dep: Any) -> bool:
        """Whether a replica of the deployment's current version and settings is READY."""
        spec = _spec(dep)
        return any(r["spec"] == spec and r["state"] == READY for r in self._replicas(dep))

    def _set_state(self, dep: Any, state: str, reason: str) -> None:
        # ``dep`` was read at the start of this pass, and only this thread writes states.
        if (dep["state"], dep["reason"]) != (state, reason):
            with self.store.tx() as db:
                db.execute("UPDATE deployments SET state = ?, reason = ? WHERE user_id = ? AND id = ?",
                           (state, reason, dep["user_id"], dep["id"]))

    def _deployment(self, key: tuple[str, str]) -> _Deployment:
        return self._deployments.setdefault(key, _Deployment())

    def _log(self, user_id: str, deployment_id: str) -> LogFile:
        return LogFile.of(self.home, user_id, deployment_id, self.log_max_bytes)


def _spec(dep: Any) -> str:
    """The spec a deployment row asks its replicas to run (``_configs.replica_spec``)."""
    return deployment_spec(dep["version_id"], dep["config_json"])
