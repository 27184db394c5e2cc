"""Hot reload: a deployment's new version swapped into its running replicas, their loaded state kept.

A new version whose only change is method bodies (``model._hot.hot_swappable``, the rule)
need not start new replicas and load the weights again: each READY replica is asked to swap
the new code in (the runner's ``Reload``). It is still a rollout of a new, immutable version,
with a rollout's guarantees: calls in flight finish on the old code, new calls get the new
code, no call fails, the first replica runs ``test()`` on the swapped code and a failure
there rolls the deployment back to the version the replicas still run.

How it goes:

1. ``Compute.update`` asks ``consider``: the update changes the version and nothing else
   replicas start with, the deployment runs with every live replica READY on the current
   version, the backend can reload, the versions have the same interpreter, and the folders
   pass the rule. Then it registers the ``Plan`` (before its transaction commits, so that no
   pass of the scheduler starts new replicas in between) and writes the new version. The
   ``note`` it leaves (hot or not, and why) is part of the deployment's status, so a client
   says which happened.
2. The scheduler's pass (``Scheduler._hot_reload``) sees the plan and ``start``s it: a thread
   of its own asks the first replica (with ``test()``), then the others, each with a route
   token that only the control plane signs (the claim ``"o": "reload"``). Meanwhile the
   deployment is UPDATING and the replicas keep serving (the old code until each swaps).
3. The next pass after the thread is done applies the outcome: the swapped replicas' rows
   become the new version's (one transaction); a refusal or failure on the first replica
   rolls the deployment back, as a failed rollout does; a first replica that could not be
   asked at all falls back to an ordinary rollout (or, with ``hot="require"``, rolls back).
   A later replica that failed keeps its row's old version, so the ordinary rollout replaces it.

A daemon restarted in the middle forgets the plan: its replicas' rows still name the old
version, so they are replaced by an ordinary rollout, which is correct whatever code they run.

Example::

    decision = hot.consider(row, version, cfg, mode="auto")
    if decision.plan is not None:
        hot.plan(key, decision.plan)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _tokens
from ..model._hot import hot_swappable
from ._backends import NodepoolBackend, ReloadUnreachable, ReplicaHandle
from ._configs import deployment_spec, replica_spec
from ._store import Store

log = logging.getLogger("jupyter_deploy.scheduler")

#: How a deployment update chooses: swap when it can, never, or swap or refuse the update.
MODES = ("auto", "never", "require")
#: The caller a reload token names (no user is called that: user ids have no spaces).
CALLER = "control plane"
#: Seconds a replica has to swap (its test() included).
RELOAD_TIMEOUT = 600.0
#: Seconds a reload token lives: it is checked when the call arrives.
TOKEN_TTL = 30.0


@dataclass
class Plan:
    """One hot reload of a deployment, from planned to done (its outcome in the last fields)."""

    from_version: str
    to_version: str
    from_spec: str
    to_spec: str
    required: bool
    #: What changed, in words ("predict() changed").
    what: str
    thread: threading.Thread | None = None
    replicas: int = 0
    done: bool = False
    #: Replica ids that now run the new code, the first one's address, and whether it ran test().
    swapped: list[str] = field(default_factory=list)
    first_address: str = ""
    tested: bool = False
    #: Why the first replica refused, or its new code failed (the deployment rolls back).
    failed: str = ""
    #: Why the first replica could not be asked at all (an ordinary rollout follows).
    unreachable: str = ""
    #: (replica id, why) of later replicas that did not swap: they are replaced the ordinary way.
    left: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """What ``consider`` decided: a ``plan`` to carry out, or none and why (``swappable``: the
    code could be swapped, yet there is nothing to swap it into, which ``require`` accepts)."""

    plan: Plan | None
    swappable: bool
    why: str


class HotReloads:
    """The hot reloads planned and under way, and what the latest update of each deployment did.

    Args:
        store: the state (deployments, replicas, versions).
        version_dir: a version's folder, by id (``Registry.version_dir``).
        sandboxes: the owners' sandboxes (a runner reads its owner's copy of a version).
        route_keys: the deployments' route keys (reload tokens are signed with them).
        kick: wakes the scheduler (a reload is done).
    """

    def __init__(self, store: Store, version_dir: Callable[[str], Path], sandboxes: Any,
                 route_keys: _tokens.RouteKeys, kick: Callable[[], None]):
        self.store, self.version_dir, self.sandboxes = store, version_dir, sandboxes
        self.route_keys, self.kick = route_keys, kick
        self._plans: dict[tuple[str, str], Plan] = {}
        self._notes: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ deciding (Compute.update's thread)

    def consider(self, row: Any, version_id: str, cfg: dict, can_reload: bool) -> Decision:
        """Whether updating the deployment ``row`` to ``version_id`` (and config ``cfg``) can swap
        the new code into its replicas; never changes anything."""
        key = (row["user_id"], row["id"])
        old_spec = deployment_spec(row["version_id"], row["config_json"])
        new_spec = replica_spec(version_id, cfg)

        def no(why: str, swappable: bool = False) -> Decision:
            return Decision(None, swappable, why)

        if replica_spec(row["version_id"], cfg) != old_spec:
            return no("the update also changes settings replicas start with (inference_batcher, transformer, "
                      "python, secrets, resources)")
        if row["desired"] != "running":
            return no(f"the deployment is {row['desired']}")
        with self._lock:
            under_way = self._plans.get(key)
        if under_way is not None and under_way.thread is not None:
            return no("another hot reload of it is under way")
        if not can_reload:
            return no("its nodepool's backend cannot hot reload")
        pythons = {r["id"]: r["python"] for r in self.store.query(
            "SELECT id, python FROM versions WHERE id IN (?, ?)", (row["version_id"], version_id))}
        if not cfg.get("python") and pythons.get(row["version_id"]) != pythons.get(version_id):
            return no(f"the new version was uploaded from another Python ({pythons.get(version_id)}, not "
                      f"{pythons.get(row['version_id'])})")
        try:
            ok, what = hot_swappable(self.version_dir(row["version_id"]), self.version_dir(version_id))
        except Exception as e:  # noqa: BLE001 - a version that cannot be read cannot be swapped in
            return no(f"cannot compare the versions' folders: {e}")
        if not ok:
            return no(what)
        replicas = self.store.query("SELECT state, spec FROM replicas WHERE user_id = ? AND deployment_id = ?", key)
        live = [r for r in replicas if r["state"] in ("STARTING", "READY", "CRASHED")]
        if not live:
            return no("no replica is running (the next one starts with the new version)", swappable=True)
        if any(r["spec"] != old_spec for r in live):
            return no("a rollout is under way")
        if any(r["state"] != "READY" for r in live):
            return no("some replicas are not READY (starting, or restarting after a crash)")
        return Decision(Plan(row["version_id"], version_id, old_spec, new_spec, False, what), True, what)

    def plan(self, key: tuple[str, str], plan: Plan) -> None:
        """Register ``plan`` for the deployment ``key``: the scheduler carries it out once the update commits."""
        with self._lock:
            self._plans[key] = plan

    def note(self, key: tuple[str, str], version_id: str, hot: bool, why: str) -> None:
        """Say, in the deployment's status, whether its rollout to ``version_id`` is a hot reload and why."""
        with self._lock:
            self._notes[key] = {"version_id": version_id, "hot": hot, "why": why}

    def status(self, key: tuple[str, str]) -> dict | None:
        """``{"version_id", "hot", "why"}`` of the deployment's latest rollout to a new version
        (None when there was none since the daemon started)."""
        with self._lock:
            note = self._notes.get(key)
            return dict(note) if note else None

    # ------------------------------------------------------------ carrying out (the scheduler's thread)

    def get(self, key: tuple[str, str]) -> Plan | None:
        with self._lock:
            return self._plans.get(key)

    def forget_planned(self, key: tuple[str, str]) -> None:
        """Drop the deployment's plan if it has not started (a newer update decides anew)."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None and plan.thread is None:
                del self._plans[key]

    def drop(self, key: tuple[str, str], plan: Plan | None = None) -> None:
        """Forget the deployment's plan (only ``plan``, when given: a newer one stays)."""
        with self._lock:
            if plan is None or self._plans.get(key) is plan:
                self._plans.pop(key, None)

    def start(self, dep: Any, plan: Plan, targets: list[tuple[str, NodepoolBackend, ReplicaHandle]],
              run_test: bool) -> None:
        """Ask each of ``targets`` (replica id, backend, handle) to swap, in a thread; ``plan.done``
        once it is over (the scheduler is kicked then)."""
        plan.replicas = len(targets)
        plan.thread = threading.Thread(
            target=self._run, args=(plan, dep["user_id"], dep["id"], dep["signing_key"], targets, run_test),
            name=f"jupyter_deploy-hot-reload-{dep['id']}", daemon=True)
        plan.thread.start()

    def _run(self, plan: Plan, user_id: str, deployment_id: str, salt: str,
             targets: list[tuple[str, NodepoolBackend, ReplicaHandle]], run_test: bool) -> None:
        try:
            path = self._model_path(user_id, plan.to_version)
            for i, (rid, backend, handle) in enumerate(targets):
                first = i == 0
                token = self.route_keys.sign(salt, deployment_id=deployment_id, caller=CALLER, ttl=TOKEN_TTL,
                                             op="reload")
                try:
                    answer = backend.reload(handle, path, plan.to_version, run_test=run_test and first,
                                            token=token, timeout=RELOAD_TIMEOUT)
                except ReloadUnreachable as e:
                    if first:
                        plan.unreachable = str(e)
                        return
                    plan.left.append((rid, str(e)))
                    continue
                if answer.HasField("error"):
                    e = answer.error
                    why = f"replica {rid}: {e.type}: {e.message}" + (f"\n{e.traceback}" if e.traceback else "")
                    if first:
                        plan.failed = why
                        return
                    plan.left.append((rid, why))
                    continue
                if first:
                    plan.tested, plan.first_address = run_test, backend.address(handle) or ""
                plan.swapped.append(rid)
        except Exception as e:  # noqa: BLE001 - whatever it was, the replicas not swapped roll out anew
            log.exception("hot reload of %s/%s to %s", user_id, deployment_id, plan.to_version)
            if not plan.swapped:
                plan.unreachable = plan.unreachable or f"{type(e).__name__}: {e}"
        finally:
            plan.done = True
            self.kick()

    def _model_path(self, user_id: str, version_id: str) -> Path:
        """The new version's folder as the owner's runners read it (their copy, where sandboxed)."""
        path = self.version_dir(version_id)
        sandbox = self.sandboxes.for_user(user_id)
        return sandbox.version(version_id, path) if sandbox is not None else path

    def apply(self, plan: Plan) -> None:
        """Make the swapped replicas' rows the new version's (one transaction)."""
        if not plan.swapped:
            return
        marks = ",".join("?" * len(plan.swapped))
        with self.store.tx() as db:
            db.execute(f"UPDATE replicas SET version_id = ?, spec = ? WHERE spec = ? AND id IN ({marks})",
                       (plan.to_version, plan.to_spec, plan.from_spec, *plan.swapped))
        for rid, why in plan.left:
            log.warning("hot reload to %s: replica %s did not swap, so it is replaced: %s", plan.to_version, rid, why)


def mode_of(hot: str) -> str:
    """An UpdateRequest's ``hot`` as one of ``MODES`` ("" is "auto"); ValueError for anything else."""
    mode = hot or "auto"
    if mode not in MODES:
        raise ValueError(f"hot must be one of {', '.join(MODES)}, got {json.dumps(hot)}")
    return mode
