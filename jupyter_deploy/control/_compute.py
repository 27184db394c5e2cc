"""Compute clusters, nodepools and deployments: create, read, update, delete.

Every change is one transaction; the scheduler then acts on the new desired
state (``scheduler.kick()``). Deleting a deployment marks it ``deleted`` and
the scheduler stops its replicas before the row goes, so a crash in between
never leaves a runner nobody knows about.

A deployment must fit its nodepool: ``min_replicas`` and ``max_replicas`` replicas
of its version at once (GPUs, memory and CPU, as ``_placement`` reserves them) are
refused at Create and Update when the nodepool cannot hold them even empty; what
fits in all but not beside other deployments' replicas waits in the scheduler.
Each user's ``max_deployments`` and ``max_replicas`` (``home/limits.yaml``) are
counted from the store in the transaction that writes the deployment.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any

from .. import _autoscale as autoscale
from ..ids import model_name
from ..proto import control_pb2 as cpb
from ._access import PLATFORM, own_logs, readable_model
from ._backends.ray import node_host
from ._calllog import read_step
from ._configs import (
    check_id,
    cluster_config,
    deployment_config,
    deployment_spec,
    merge,
    nodepool_config,
    replica_spec,
)
from ._errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from ._hot import mode_of
from ._limits import refuse
from ._resources import needs_from, never_fits, over_capacity
from ._scheduler import ROLLBACK_PREFIX
from ._store import Store, now

LOCAL = "local"
KINDS = ("compute_cluster", "nodepool", "deployment")


class Compute:
    #: Seconds Delete waits for a deployment's replicas to stop before it answers (the deployment is
    #: deleted either way: it is gone from Get and List, and its row goes when its replicas have).
    DELETE_WAIT = 30.0

    def __init__(self, store: Store, host: Any, registry: Any, scheduler: Any, calls: Any = None,
                 limits: Any = None):
        self.store, self.host, self.registry, self.scheduler = store, host, registry, scheduler
        self.calls = calls  # the CallLog: access records, inference logs, metrics
        if limits is None:
            from ..configs.limits import LimitsConfig

            limits = LimitsConfig()
        self.limits = limits  # a configs.limits.LimitsConfig: per-user max_deployments, max_replicas

    # ------------------------------------------------------------ defaults

    def ensure_defaults(self, user_id: str | None = None) -> None:
        """The embedded cluster and nodepool ``local`` of the user ``local`` (or of ``user_id``),
        and the shared nodepool of the user ``platform``, each describing this host."""
        defaults = [(user_id, LOCAL, LOCAL)] if user_id else [(LOCAL, LOCAL, LOCAL), (PLATFORM, "platform", "shared")]
        for user_id, cluster_id, nodepool_id in defaults:
            with self.store.tx() as db:
                db.execute("INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)", (user_id, now()))
                db.execute("INSERT OR IGNORE INTO apps (user_id, id, created_at) VALUES (?, 'default', ?)",
                           (user_id, now()))
                db.execute("INSERT OR IGNORE INTO compute_clusters (user_id, id, config_json, created_at) "
                           "VALUES (?, ?, ?, ?)", (user_id, cluster_id, json.dumps(cluster_config({})), now()))
                db.execute("INSERT OR IGNORE INTO nodepools (user_id, compute_cluster_id, id, config_json, "
                           "created_at) VALUES (?, ?, ?, ?, ?)",
                           (user_id, cluster_id, nodepool_id, json.dumps(nodepool_config({}, self.host)), now()))

    # ------------------------------------------------------------ create

    def create(self, caller: str, ref: cpb.ResourceRef, config: dict) -> cpb.Resource:
        owner = ref.user_id or caller
        if owner != caller:
            raise PermissionDenied(f"cannot create a {ref.kind.replace('_', ' ')} for user {owner!r}")
        check_id(ref.kind, ref.id)
        try:
            if ref.kind == "compute_cluster":
                cfg = cluster_config(config)
                # A Ray cluster must answer now (FailedPrecondition naming its address otherwise).
                self.scheduler.backends(cfg).check()
                with self.store.tx() as db:
                    db.execute("INSERT INTO compute_clusters (user_id, id, config_json, created_at) "
                               "VALUES (?, ?, ?, ?)", (owner, ref.id, json.dumps(cfg), now()))
            elif ref.kind == "nodepool":
                cluster = json.loads(self._cluster(owner, ref.compute_cluster_id)["config_json"] or "{}")
                cfg = self._nodepool_config(ref.compute_cluster_id, cluster, config)
                with self.store.tx() as db:
                    db.execute("INSERT INTO nodepools (user_id, compute_cluster_id, id, config_json, "
                               "created_at) VALUES (?, ?, ?, ?, ?)",
                               (owner, ref.compute_cluster_id, ref.id, json.dumps(cfg), now()))
            elif ref.kind == "deployment":
                self._create_deployment(owner, ref, config)
            else:
                raise InvalidArgument(f"unknown resource kind {ref.kind!r} (use one of {', '.join(KINDS)})")
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e) and ref.kind == "deployment" and self.store.one(
                    "SELECT 1 FROM deployments WHERE user_id = ? AND id = ? AND desired = 'deleted'", (owner, ref.id)):
                raise AlreadyExists(f"deployment {ref.id!r} is still being deleted (its replicas are stopping); "
                                    "create it again in a few seconds") from None
            if "UNIQUE" in str(e) and ref.kind == "deployment" and "deployments.model" in str(e):
                raise AlreadyExists(self._duplicate_model_message(owner, ref, config)) from None
            if "UNIQUE" in str(e):
                raise AlreadyExists(f"{ref.kind.replace('_', ' ')} {ref.id!r} already exists") from None
            raise
        self.scheduler.kick()
        return self.get(caller, ref)

    def _create_deployment(self, owner: str, ref: cpb.ResourceRef, config: dict) -> None:
        nodepool = self._nodepool(owner, ref.compute_cluster_id, ref.nodepool_id)
        cfg = self._checked_python(deployment_config(config, owner), owner)
        model = cfg["worker"]["model"]
        # Another user's model may be deployed on one's own nodepool if it is public.
        readable_model(self.store, owner, (model["user_id"], model["app_id"], model["id"]))
        version = self._resolve_version(model)
        self._check_fits(ref.id, nodepool, version, cfg)
        stamp = now()
        with self.store.tx() as db:
            self._check_limits(db, owner, ref.id, cfg)
            if cfg["default"]:
                db.execute("UPDATE deployments SET is_default = 0 WHERE model_user_id = ? AND "
                           "model_app_id = ? AND model_id = ?", (model["user_id"], model["app_id"], model["id"]))
            db.execute(
                "INSERT INTO deployments (user_id, id, compute_cluster_id, nodepool_id, model_user_id, "
                "model_app_id, model_id, pinned_version_id, version_id, config_json, is_default, desired, "
                "state, reason, signing_key, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 'CREATING', '', ?, ?, ?)",
                (owner, ref.id, ref.compute_cluster_id, ref.nodepool_id, model["user_id"], model["app_id"],
                 model["id"], model["model_version"]["id"] or None, version.id, json.dumps(cfg),
                 int(cfg["default"]), os.urandom(32).hex(), stamp, stamp))

    def _backend(self, owner: str, cluster_id: str) -> Any:
        """The nodepool backend of a compute cluster (``_backends``)."""
        return self.scheduler.backends(json.loads(self._cluster(owner, cluster_id)["config_json"] or "{}"))

    def _nodepool_config(self, cluster_id: str, cluster: dict, config: dict) -> dict:
        """A nodepool's config, its ``instance_type`` defaulting to this host, or on a Ray cluster to
        the largest node its ``node_labels`` select."""
        labels = (config or {}).get("node_labels") if isinstance(config, dict) else None
        if cluster.get("cloud_provider") != "ray":
            if labels:
                raise InvalidArgument(f"nodepool config: node_labels: select Ray nodes; compute cluster "
                                      f"{cluster_id} is {cluster.get('cloud_provider') or 'local'} (this host)")
            return nodepool_config(config, self.host)
        nodes = self.scheduler.backends(cluster).describe()
        selector = labels if isinstance(labels, dict) else {}  # a bad one is reported by the validation
        chosen = [n for n in nodes if all(n.labels.get(k) == v for k, v in selector.items())]
        if not chosen:
            shown = ", ".join(f"{k}={v}" for k, v in selector.items())
            raise FailedPrecondition(f"no node of Ray cluster {cluster_id} has the labels {shown} "
                                     f"(its nodes: {'; '.join(_node_text(n) for n in nodes) or 'none'})")
        largest = max(chosen, key=lambda n: (len(n.gpus), n.cpus, n.memory))
        return nodepool_config(config, node_host(largest), where=f"the largest node it selects ({largest.node_id[:12]})")

    def describe_cluster(self, row: sqlite3.Row) -> dict:
        """``{cloud_provider, ray_address, nodes: [{node_id, labels, cpus, memory, gpus}]}``: for a
        Ray cluster, as Ray reports them (with ``error`` when it does not answer); for ``local``,
        this host as one node."""
        cfg = json.loads(row["config_json"] or "{}")
        backend = self.scheduler.backends(cfg)
        out: dict[str, Any] = {"cloud_provider": cfg.get("cloud_provider") or LOCAL,
                               "ray_address": getattr(backend, "ray_address", "") if backend.provider == "ray" else ""}
        try:
            out["nodes"] = [{"node_id": n.node_id, "labels": n.labels, "cpus": n.cpus, "memory": n.memory,
                             "gpus": n.gpus} for n in backend.describe()]
        except FailedPrecondition as e:
            out["nodes"], out["error"] = [], e.message
        return out

    def _check_fits(self, deployment_id: str, nodepool: sqlite3.Row, version: Any, cfg: dict) -> None:
        """Refuse a deployment its nodepool can never hold: one replica (FailedPrecondition), or
        ``min_replicas`` or ``max_replicas`` of them at once (ResourceExhausted). What does not fit
        *yet* (other deployments hold the room) waits; the scheduler says why."""
        where = f"{nodepool['compute_cluster_id']}/{nodepool['id']}"
        needs = needs_from(json.loads(version.config_json or "{}"))
        asked = (cfg.get("resources") or {}).get("num_accelerators")
        gpus = needs.num_accelerators if asked is None else int(asked)
        pool = json.loads(nodepool["config_json"] or "{}")
        backend = self._backend(nodepool["user_id"], nodepool["compute_cluster_id"])
        if backend.places_replicas:
            # Ray: against the nodes the pool's labels select, as Ray reports them; how many replicas
            # fit at once is Ray's to say (the cluster may grow): what does not fit now waits there.
            impossible = backend.never_fits(nodepool["id"], pool, gpus, needs)
            if impossible:
                raise FailedPrecondition(f"deployment {deployment_id} can never run on nodepool {where}: "
                                         f"{impossible}")
            return
        impossible = never_fits(gpus, needs, self.host, pool)
        if impossible:
            raise FailedPrecondition(f"deployment {deployment_id} can never run on nodepool {where}: {impossible}")
        scale = autoscale.stored(cfg)
        # max_replicas too, not clamped: the autoscaler would add replicas under load that could only
        # ever wait, so a stored maximum the nodepool cannot reach is a mistake to hear about now.
        for setting in ("min_replicas", "max_replicas"):
            why = over_capacity(setting, scale[setting], gpus, needs, self.host, pool)
            if why:
                raise ResourceExhausted(f"deployment {deployment_id} does not fit nodepool {where}: {why}; "
                                        f"lower {setting}, or deploy to a larger nodepool")

    def _check_limits(self, db: sqlite3.Connection, owner: str, deployment_id: str, cfg: dict) -> None:
        """Refuse (ResourceExhausted) a deployment that takes ``owner`` over ``max_deployments`` or
        ``max_replicas``, counted from the store inside the transaction ``db`` that writes it."""
        limits = self.limits.for_user(owner)
        others = db.execute("SELECT id, config_json FROM deployments WHERE user_id = ? AND desired != 'deleted' "
                            "AND id != ?", (owner, deployment_id)).fetchall()
        row = db.execute("SELECT config_json FROM deployments WHERE user_id = ? AND id = ? AND desired != 'deleted'",
                         (owner, deployment_id)).fetchone()
        if row is None and len(others) + 1 > limits.max_deployments:
            refuse("max_deployments", limits.max_deployments, f"deployment {deployment_id}", owner,
                   f"{len(others)} deployments now")
        asked = autoscale.stored(cfg)["max_replicas"]
        before = autoscale.stored(json.loads(row["config_json"] or "{}"))["max_replicas"] if row else 0
        held = sum(autoscale.stored(json.loads(r["config_json"] or "{}"))["max_replicas"] for r in others)
        # An update that does not ask for more is let through even over a limit lowered since.
        if asked > before and held + asked > limits.max_replicas:
            refuse("max_replicas", limits.max_replicas, f"deployment {deployment_id} with max_replicas {asked}",
                   owner, f"the other deployments ask for {held}")

    def _checked_python(self, cfg: dict, owner: str) -> dict:
        """``cfg`` with its ``python`` checked against the interpreters the admin allowed."""
        if cfg.get("python"):
            cfg["python"] = self.registry.interpreters.check(cfg["python"], owner, "deployment config python")
        return cfg

    def _duplicate_model_message(self, owner: str, ref: cpb.ResourceRef, config: dict) -> str:
        model = deployment_config(config, owner)["worker"]["model"]
        row = self.store.one(
            "SELECT id FROM deployments WHERE user_id = ? AND compute_cluster_id = ? AND nodepool_id = ? "
            "AND model_user_id = ? AND model_app_id = ? AND model_id = ?",
            (owner, ref.compute_cluster_id, ref.nodepool_id, model["user_id"], model["app_id"], model["id"]))
        other = row["id"] if row else "?"
        return (f"model {model_name(model['user_id'], model['app_id'], model['id'])} already has a deployment "
                f"({other}) on nodepool {ref.compute_cluster_id}/{ref.nodepool_id}: one deployment per "
                f"model per nodepool; update {other} instead")

    def _resolve_version(self, model: dict) -> Any:
        vref = cpb.VersionRef(model=cpb.ModelRef(user_id=model["user_id"], app_id=model["app_id"],
                                                  model_id=model["id"]),
                              version_id=model["model_version"]["id"])
        return self.registry.get_version(vref)

    # ------------------------------------------------------------ read

    def _cluster(self, owner: str, cluster_id: str) -> sqlite3.Row:
        row = self.store.one("SELECT * FROM compute_clusters WHERE user_id = ? AND id = ?", (owner, cluster_id))
        if row is None and cluster_id == LOCAL and self.store.one("SELECT 1 FROM users WHERE id = ?", (owner,)):
            # Every user has this host as cluster `local`, made the first time they use it.
            self.ensure_defaults(owner)
            row = self.store.one("SELECT * FROM compute_clusters WHERE user_id = ? AND id = ?", (owner, cluster_id))
        if row is None:
            raise NotFound(f"compute cluster {cluster_id!r} not found for user {owner!r}")
        return row

    def _nodepool(self, owner: str, cluster_id: str, nodepool_id: str) -> sqlite3.Row:
        self._cluster(owner, cluster_id)
        row = self.store.one("SELECT * FROM nodepools WHERE user_id = ? AND compute_cluster_id = ? AND id = ?",
                             (owner, cluster_id, nodepool_id))
        if row is None:
            raise NotFound(f"nodepool {nodepool_id!r} not found in compute cluster {cluster_id!r}")
        return row

    def deployment_row(self, owner: str, deployment_id: str) -> sqlite3.Row:
        row = self.store.one("SELECT * FROM deployments WHERE user_id = ? AND id = ? AND desired != 'deleted'",
                             (owner, deployment_id))
        if row is None:
            raise NotFound(f"deployment {deployment_id!r} not found for user {owner!r}")
        return row

    def get(self, caller: str, ref: cpb.ResourceRef) -> cpb.Resource:
        owner = ref.user_id or caller
        if ref.kind == "compute_cluster":
            return self._cluster_resource(self._cluster(owner, ref.id))
        if ref.kind == "nodepool":
            return self._nodepool_resource(self._nodepool(owner, ref.compute_cluster_id, ref.id))
        if ref.kind == "deployment":
            return self._deployment_resource(self.deployment_row(owner, ref.id))
        raise InvalidArgument(f"unknown resource kind {ref.kind!r} (use one of {', '.join(KINDS)})")

    def list(self, caller: str, parent: cpb.ResourceRef) -> list[cpb.Resource]:
        owner = parent.user_id or caller
        if parent.kind == "compute_cluster":
            rows = self.store.query("SELECT * FROM compute_clusters WHERE user_id = ? ORDER BY id", (owner,))
            return [self._cluster_resource(r) for r in rows]
        if parent.kind == "nodepool":
            sql, args = "SELECT * FROM nodepools WHERE user_id = ?", [owner]
            if parent.compute_cluster_id:
                self._cluster(owner, parent.compute_cluster_id)
                sql, args = sql + " AND compute_cluster_id = ?", args + [parent.compute_cluster_id]
            return [self._nodepool_resource(r) for r in self.store.query(sql + " ORDER BY id", tuple(args))]
        if parent.kind == "deployment":
            sql, args = "SELECT * FROM deployments WHERE user_id = ? AND desired != 'deleted'", [owner]
            for column, value in (("compute_cluster_id", parent.compute_cluster_id),
                                  ("nodepool_id", parent.nodepool_id)):
                if value:
                    sql, args = sql + f" AND {column} = ?", args + [value]
            return [self._deployment_resource(r) for r in self.store.query(sql + " ORDER BY id", tuple(args))]
        raise InvalidArgument(f"unknown resource kind {parent.kind!r} (use one of {', '.join(KINDS)})")

    def _cluster_resource(self, row: sqlite3.Row) -> cpb.Resource:
        return cpb.Resource(kind="compute_cluster", id=row["id"], user_id=row["user_id"],
                            compute_cluster_id=row["id"], config_json=row["config_json"],
                            status_json=json.dumps(self.describe_cluster(row)), created_at=row["created_at"])

    def _nodepool_resource(self, row: sqlite3.Row) -> cpb.Resource:
        return cpb.Resource(kind="nodepool", id=row["id"], user_id=row["user_id"],
                            compute_cluster_id=row["compute_cluster_id"], nodepool_id=row["id"],
                            config_json=row["config_json"], status_json="{}", created_at=row["created_at"])

    def _deployment_resource(self, row: sqlite3.Row) -> cpb.Resource:
        version = self.store.one("SELECT number FROM versions WHERE id = ?", (row["version_id"],))
        replicas = [
            {"id": r["id"], "state": r["state"], "address": r["address"], "pid": r["pid"],
             "gpus": r["gpus"], "restarts": r["restarts"], "version_id": r["version_id"], "spec": r["spec"],
             # a starting replica's step (environment, import, load_model, test) and for how long
             "step": read_step(self.scheduler.home, row["user_id"], row["id"], r["id"])
             if r["state"] == "STARTING" else None}
            for r in self.store.query("SELECT * FROM replicas WHERE user_id = ? AND deployment_id = ? "
                                      "ORDER BY started_at", (row["user_id"], row["id"]))]
        status = {
            "state": row["state"], "reason": row["reason"], "desired": row["desired"],
            "model": model_name(row["model_user_id"], row["model_app_id"], row["model_id"]),
            "version_id": row["version_id"], "version_number": version["number"] if version else None,
            # what its replicas should run (version and start settings); one with another spec is leaving
            "spec": deployment_spec(row["version_id"], row["config_json"]),
            "pinned_version_id": row["pinned_version_id"], "default": bool(row["is_default"]),
            "replicas": replicas, "updated_at": row["updated_at"],
            "rollout_failed": row["reason"].startswith(ROLLBACK_PREFIX),
            # the model's own exception (step, type, message, traceback) when it is why it FAILED
            # or was rolled back; None for a crash, a wait, or once it is started or updated again
            "failure": json.loads(row["failure_json"]) if row["failure_json"] and (
                row["state"] == "FAILED" or row["reason"].startswith(ROLLBACK_PREFIX)) else None,
            # wanted replicas, load seen, and the time the latest wake from IDLE took (W4 from IDLE)
            "autoscale": self.scheduler.scale_status(row["user_id"], row["id"]),
            # whether the latest rollout to a new version swaps code in place (hot reload), and why (not)
            "hot_reload": self.scheduler.hot.status((row["user_id"], row["id"])),
        }
        return cpb.Resource(kind="deployment", id=row["id"], user_id=row["user_id"],
                            compute_cluster_id=row["compute_cluster_id"], nodepool_id=row["nodepool_id"],
                            config_json=row["config_json"], status_json=json.dumps(status),
                            created_at=row["created_at"])

    # ------------------------------------------------------------ update, act, delete

    def update(self, caller: str, ref: cpb.ResourceRef, changes: dict, hot: str = "auto") -> cpb.Resource:
        """Change a deployment's config; an unpinned worker is re-resolved to the latest version.

        A new version whose only change is method bodies is swapped into the running replicas
        (``_hot``) unless ``hot`` is ``"never"``; with ``"require"``, an update that cannot swap is
        refused (FailedPrecondition, saying why) and nothing changes.
        """
        try:
            hot = mode_of(hot)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        if ref.kind != "deployment":
            raise InvalidArgument(f"only deployments can be updated, not a {ref.kind.replace('_', ' ')}")
        owner = ref.user_id or caller
        row = self.deployment_row(owner, ref.id)
        merged = merge(json.loads(row["config_json"]), changes)
        scale, asked = merged.get("autoscale_config"), changes.get("autoscale_config")
        if isinstance(asked, dict) and "min_replicas" in asked and "max_replicas" not in asked and \
                isinstance(scale, dict) and isinstance(scale.get("max_replicas"), int) and \
                isinstance(asked["min_replicas"], int) and scale["max_replicas"] < asked["min_replicas"]:
            del scale["max_replicas"]  # a raised minimum lifts the maximum with it (its default: the minimum)
        cfg = self._checked_python(deployment_config(merged, owner), owner)
        model = cfg["worker"]["model"]
        if (model["user_id"], model["app_id"], model["id"]) != (
                row["model_user_id"], row["model_app_id"], row["model_id"]):
            raise InvalidArgument("a deployment keeps its model; create another deployment for "
                                  f"{model_name(model['user_id'], model['app_id'], model['id'])}")
        version = self._resolve_version(model)
        self._check_fits(ref.id, self._nodepool(owner, row["compute_cluster_id"], row["nodepool_id"]), version, cfg)
        key = (owner, ref.id)
        plan, note = self._hot_plan(row, version.id, cfg, hot)
        if note is not None:  # a new version rolls out: a plan not started yet is superseded
            self.scheduler.hot.forget_planned(key)
        if plan is not None:
            # Before the commit: a scheduler pass right after it must not start new replicas.
            self.scheduler.hot.plan(key, plan)
        try:
            self._write_update(owner, ref, row, model, version, cfg)
        except BaseException:
            if plan is not None:
                self.scheduler.hot.drop(key, plan)
            raise
        if note is not None:
            self.scheduler.hot.note(key, version.id, plan is not None, note)
        self.scheduler.kick()
        return self.get(caller, ref)

    def _hot_plan(self, row: sqlite3.Row, version_id: str, cfg: dict, hot: str) -> tuple[Any, str | None]:
        """``(the hot reload plan or None, the note for the status or None)`` of an update of ``row``
        to ``version_id`` and ``cfg``; FailedPrecondition when ``hot`` is ``"require"`` and it cannot swap."""
        if replica_spec(version_id, cfg) == deployment_spec(row["version_id"], row["config_json"]):
            return None, None  # nothing rolls out
        if version_id == row["version_id"]:
            if hot == "require":
                raise FailedPrecondition(f"cannot hot reload deployment {row['id']}: the update changes "
                                         "settings replicas start with, not the version's code")
            return None, None
        if hot == "never":
            return None, "hot reload turned off for this update"
        decision = self.scheduler.hot.consider(row, version_id, cfg, self.scheduler.can_reload(row))
        if decision.plan is None and hot == "require" and not decision.swappable:
            raise FailedPrecondition(f"cannot hot reload deployment {row['id']}: {decision.why}; nothing was "
                                     "changed (deploy with hot=None to roll out new replicas)")
        if decision.plan is not None:
            decision.plan.required = hot == "require"
        return decision.plan, decision.why

    def _write_update(self, owner: str, ref: cpb.ResourceRef, row: sqlite3.Row, model: dict, version: Any,
                      cfg: dict) -> None:
        with self.store.tx() as db:
            self._check_limits(db, owner, ref.id, cfg)
            if cfg["default"]:
                db.execute("UPDATE deployments SET is_default = 0 WHERE model_user_id = ? AND "
                           "model_app_id = ? AND model_id = ?", (model["user_id"], model["app_id"], model["id"]))
            db.execute("UPDATE deployments SET config_json = ?, pinned_version_id = ?, version_id = ?, "
                       "is_default = ?, updated_at = ? WHERE user_id = ? AND id = ?",
                       (json.dumps(cfg), model["model_version"]["id"] or None, version.id,
                        int(cfg["default"]), now(), owner, ref.id))
            if replica_spec(version.id, cfg) != deployment_spec(row["version_id"], row["config_json"]) and \
                    row["desired"] == "running":
                # A new version or new settings that replicas start with: they roll out. Say so at
                # once: a wait_until_ready() right after must not see the old RUNNING.
                db.execute("UPDATE deployments SET state = 'UPDATING', reason = '' WHERE user_id = ? AND id = ?",
                           (owner, ref.id))

    def act(self, caller: str, ref: cpb.ResourceRef, action: str) -> cpb.Resource:
        if ref.kind != "deployment" or action not in ("start", "stop"):
            raise InvalidArgument(f"unknown action {action!r} on a {ref.kind.replace('_', ' ')} "
                                  "(deployments take start and stop)")
        owner = ref.user_id or caller
        self.deployment_row(owner, ref.id)
        desired = "running" if action == "start" else "stopped"
        with self.store.tx() as db:
            db.execute("UPDATE deployments SET desired = ?, updated_at = ?, reason = '', state = ? "
                       "WHERE user_id = ? AND id = ?",
                       (desired, now(), "STARTING" if action == "start" else "STOPPING", owner, ref.id))
        self.scheduler.kick()
        return self.get(caller, ref)

    def delete(self, caller: str, refs: list[cpb.ResourceRef], timeout: float | None = None) -> None:
        for ref in refs:
            owner = ref.user_id or caller
            if owner != caller:
                raise PermissionDenied(f"cannot delete another user's {ref.kind.replace('_', ' ')}")
            if ref.kind == "deployment":
                self.deployment_row(owner, ref.id)
                with self.store.tx() as db:
                    db.execute("UPDATE deployments SET desired = 'deleted', updated_at = ? "
                               "WHERE user_id = ? AND id = ?", (now(), owner, ref.id))
                self.scheduler.kick()
                self._wait_gone(owner, ref.id, self.DELETE_WAIT if timeout is None else timeout)
            elif ref.kind == "nodepool":
                self._nodepool(owner, ref.compute_cluster_id, ref.id)
                self._refuse_if_used("nodepool", ref.id, "SELECT id FROM deployments WHERE user_id = ? AND "
                                     "compute_cluster_id = ? AND nodepool_id = ?",
                                     (owner, ref.compute_cluster_id, ref.id))
                with self.store.tx() as db:
                    db.execute("DELETE FROM nodepools WHERE user_id = ? AND compute_cluster_id = ? AND id = ?",
                               (owner, ref.compute_cluster_id, ref.id))
            elif ref.kind == "compute_cluster":
                self._cluster(owner, ref.id)
                self._refuse_if_used("compute cluster", ref.id, "SELECT id FROM nodepools WHERE user_id = ? "
                                     "AND compute_cluster_id = ?", (owner, ref.id), what="nodepools")
                with self.store.tx() as db:
                    db.execute("DELETE FROM compute_clusters WHERE user_id = ? AND id = ?", (owner, ref.id))
            else:
                raise InvalidArgument(f"unknown resource kind {ref.kind!r} (use one of {', '.join(KINDS)})")

    def _refuse_if_used(self, kind: str, rid: str, sql: str, args: tuple, what: str = "deployments") -> None:
        users = [r["id"] for r in self.store.query(sql, args)]
        if users:
            raise FailedPrecondition(f"{kind} {rid!r} still has {what} ({', '.join(users)}); delete them first")

    def _wait_gone(self, owner: str, deployment_id: str, timeout: float) -> None:
        """Wait up to ``timeout`` for the scheduler to remove a deleted deployment's row.

        Past it the delete still stands (it was committed: the deployment is gone from Get and
        List, and its replicas are stopping), so it is no error: refusing would tell the user
        the opposite of what happened.
        """
        deadline = time.monotonic() + timeout
        while self.store.one("SELECT 1 FROM deployments WHERE user_id = ? AND id = ?", (owner, deployment_id)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def versions_in_use(self, version_ids: list[str]) -> list[str]:
        """Deployments that serve or pin any of these versions."""
        if not version_ids:
            return []
        marks = ",".join("?" * len(version_ids))
        rows = self.store.query(f"SELECT DISTINCT id FROM deployments WHERE desired != 'deleted' AND "
                                f"(version_id IN ({marks}) OR pinned_version_id IN ({marks}))",
                                tuple(version_ids) * 2)
        return [r["id"] for r in rows]

    def logs(self, caller: str, ref: cpb.ResourceRef, lines: int) -> list[str]:
        owner = ref.user_id or caller
        self.deployment_row(owner, ref.id)
        return self.scheduler.logs(owner, ref.id, lines or 200)

    def call_logs(self, caller: str, req: cpb.CallLogsRequest) -> list[cpb.CallRecord]:
        """The deployment's access records (with inputs and outputs when ``req.inference``)."""
        row = self._own_deployment(caller, req.ref)
        if req.limit < 0:
            raise InvalidArgument(f"limit must be 0 (the default, 1000) or more, got {req.limit}")
        return self.calls.records(row["user_id"], row["id"], created_at=row["created_at"], since=req.since,
                                  limit=req.limit or 1000, inference=req.inference)

    def metrics(self, caller: str, ref: cpb.ResourceRef) -> dict:
        """Requests, errors, latency, in flight and queue depth, as the deployment's runners report them."""
        row = self._own_deployment(caller, ref)
        replicas = [r["id"] for r in self.store.query(
            "SELECT id FROM replicas WHERE user_id = ? AND deployment_id = ? AND state = 'READY'",
            (row["user_id"], row["id"]))]
        out = {"deployment_id": row["id"], "state": row["state"], "ready_replicas": len(replicas)}
        out.update(self.calls.metrics(row["user_id"], row["id"], created_at=row["created_at"], replicas=replicas))
        return out

    def _own_deployment(self, caller: str, ref: cpb.ResourceRef) -> sqlite3.Row:
        owner = ref.user_id or caller
        own_logs(caller, owner, ref.id)
        return self.deployment_row(owner, ref.id)


def _node_text(node: Any) -> str:
    labels = ",".join(f"{k}={v}" for k, v in node.labels.items()) or "no labels"
    return f"{node.node_id[:12]} ({labels})"
