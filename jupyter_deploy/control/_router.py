"""Route resolution: which runner serves a call, and the token that lets the caller in.

In this order (the Clarifai seed's): the given deployment; else the given
compute cluster + nodepool; else the caller's default deployment of the model
(the one marked ``default``, else the only one); else, for models of the
built-in user ``platform`` only, the shared nodepool, which starts a replica
on demand. Anything else is a clear error that says what to do.

A deployment that scaled to zero (IDLE) is woken the same way: the call's
route resolution starts a replica and answers at once with a route that says
"retry after" (``Route.retry_after``) until one serves; the client resolves
again until then, so the caller sees a slow call, not a failed one, and no
caller holds one of the daemon's threads while it waits.
The route lists every serving replica, and for a deployment whose replica
count may change, a time to resolve again, so clients spread their calls over
the replicas the autoscaler adds.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .. import _autoscale as autoscale
from .. import _tokens, ids
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb
from ._access import PLATFORM, own_resource, readable_model
from ._errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ._store import Store, now

#: Where platform models nobody deployed are served (owned by the user ``platform``).
SHARED_CLUSTER, SHARED_NODEPOOL = "platform", "shared"


class Router:
    #: Seconds a client waits before resolving again while a replica starts.
    retry_after = 0.05
    #: Seconds a wake keeps callers waiting for its replica (the client gives up at its own limit).
    start_timeout = 120.0
    #: Seconds a route of an autoscaling deployment is used before the client resolves it again.
    refresh_seconds = 2.0

    def __init__(self, store: Store, registry: Any, scheduler: Any, compute: Any, keys: _tokens.RouteKeys,
                 ttl: float = _tokens.DEFAULT_TTL):
        self.store, self.registry, self.scheduler, self.compute = store, registry, scheduler, compute
        self.keys = keys  # each deployment's route key, derived from the daemon's secret and its salt
        self.ttl = min(ttl, _tokens.MAX_TTL)  # runners refuse longer-lived tokens
        self._waiting: dict[tuple[str, str], float] = {}  # deployments starting for callers -> until when
        self._lock = threading.Lock()

    def resolve(self, caller: str, req: cpb.RouteRequest) -> cpb.Route:
        model = req.model
        model_user = model.user_id or caller
        model_app = model.app_id or "default"
        if req.deployment_id and (req.compute_cluster_id or req.nodepool_id):
            raise InvalidArgument("give deployment_id, or compute_cluster_id with nodepool_id, not both")
        if bool(req.compute_cluster_id) != bool(req.nodepool_id):
            raise InvalidArgument("compute_cluster_id and nodepool_id go together; give both")
        owner = req.user_id or caller
        own_resource(caller, owner, "deployments")  # calls go through one's own deployments
        live = "desired != 'deleted'"
        if req.deployment_id:
            row = self.store.one(f"SELECT * FROM deployments WHERE user_id = ? AND id = ? AND {live}",
                                 (owner, req.deployment_id))
            if row is None:
                raise NotFound(f"deployment {req.deployment_id!r} not found for user {owner!r}")
            if model.model_id and (row["model_user_id"], row["model_app_id"], row["model_id"]) != (
                    model_user, model_app, model.model_id):
                raise InvalidArgument(
                    f"deployment {req.deployment_id!r} serves "
                    f"{ids.model_name(row['model_user_id'], row['model_app_id'], row['model_id'])}, "
                    f"not {ids.model_name(model_user, model_app, model.model_id)}")
            readable_model(self.store, caller, (row["model_user_id"], row["model_app_id"], row["model_id"]))
        else:
            if not model.model_id:
                raise InvalidArgument("name the model (model_id) or the deployment (deployment_id)")
            key = (model_user, model_app, model.model_id)
            readable_model(self.store, caller, key)
            if req.compute_cluster_id:
                row = self.store.one(
                    f"SELECT * FROM deployments WHERE user_id = ? AND compute_cluster_id = ? AND nodepool_id = ? "
                    f"AND model_user_id = ? AND model_app_id = ? AND model_id = ? AND {live}",
                    (owner, req.compute_cluster_id, req.nodepool_id, *key))
                if row is None:
                    raise NotFound(f"model {ids.model_name(*key)} has no deployment on nodepool "
                                   f"{req.compute_cluster_id}/{req.nodepool_id}")
            else:
                row = self._default(owner, key)
        on_demand = row is None
        if on_demand:  # a platform model nobody deployed: the shared nodepool serves it
            row = self._shared(key)
        try:
            address, version_id = self._route(row["user_id"], row["id"], on_demand)
        except _Starting as e:
            return cpb.Route(deployment_id=row["id"], user_id=row["user_id"], retry_after=self.retry_after,
                             reason=e.reason)
        version = self.registry.get_version(cpb.VersionRef(version_id=version_id))
        token = self.keys.sign(row["signing_key"], deployment_id=row["id"], caller=caller, ttl=self.ttl)
        addresses = self.scheduler.addresses(row["user_id"], row["id"], version_id) or [address]
        scaling = autoscale.scales(autoscale.stored(json.loads(row["config_json"])))
        if address in addresses:  # the replica route() picked first: clients that use one still take turns
            addresses.insert(0, addresses.pop(addresses.index(address)))
        return cpb.Route(address=address, token=token, expires_at=now() + self.ttl,
                         deployment_id=row["id"], user_id=row["user_id"], version_id=version_id,
                         description=version.description if version.HasField("description")
                         else pb.ModelDescription(), addresses=addresses,
                         ipc_addresses=self.scheduler.ipc_addresses(row["user_id"], row["id"], addresses),
                         refresh_at=now() + self.refresh_seconds if scaling else 0.0)

    def _route(self, user_id: str, deployment_id: str, on_demand: bool = False) -> tuple[str, str]:
        """A READY replica; _Starting while one comes up for a wake from zero (or, ``on_demand``,
        for a shared-nodepool deployment); FailedPrecondition otherwise."""
        key = (user_id, deployment_id)
        try:
            route = self.scheduler.route(user_id, deployment_id)
        except FailedPrecondition as e:
            # Once a wake (or an on-demand start) is under way, callers keep waiting for it, as
            # they would in one long call, until a replica serves or the deployment fails.
            with self._lock:
                waiting = self._waiting.get(key, 0.0) > time.monotonic()
            if not (waiting or self.scheduler.wake(user_id, deployment_id) or on_demand):
                raise
            row = self.store.one("SELECT state, desired FROM deployments WHERE user_id = ? AND id = ?",
                                 (user_id, deployment_id))
            if row is None or row["state"] in ("FAILED", "STOPPED") or row["desired"] != "running":
                with self._lock:
                    self._waiting.pop(key, None)
                raise
            with self._lock:
                self._waiting.setdefault(key, time.monotonic() + self.start_timeout)
            raise _Starting(e.message) from None
        with self._lock:
            self._waiting.pop(key, None)
        return route

    def _default(self, owner: str, key: tuple[str, str, str]) -> Any:
        """The caller's deployment of the model marked default, else its only one (None for a
        platform model with none)."""
        rows = self.store.query(
            "SELECT * FROM deployments WHERE user_id = ? AND model_user_id = ? AND model_app_id = ? "
            "AND model_id = ? AND desired != 'deleted' ORDER BY id", (owner, *key))
        marked = [r for r in rows if r["is_default"]]
        if marked:
            return marked[0]
        if len(rows) == 1:
            return rows[0]
        name = ids.model_name(*key)
        if rows:
            raise FailedPrecondition(
                f"model {name} has {len(rows)} deployments ({', '.join(r['id'] for r in rows)}) and none is "
                "the default: pass deployment_id=..., or mark one with default: true")
        if key[0] == PLATFORM:
            return None
        raise FailedPrecondition(
            f"model {name} has no deployment; create one, e.g. "
            f"Nodepool('local', compute_cluster_id='local').create_deployment('{_suggested_id(key[2])}', "
            f"worker={{'model': {{'id': '{key[2]}', 'user_id': '{key[0]}'}}}}) "
            "or `jupyter-deploy deployment create`")

    def _shared(self, key: tuple[str, str, str]) -> Any:
        """The shared nodepool's deployment row of a platform model, created or started on demand."""
        deployment_id = "shared" + _deployment_id(key[2])
        row = self.store.one("SELECT * FROM deployments WHERE user_id = ? AND id = ?", (PLATFORM, deployment_id))
        if row is None or row["desired"] != "running":
            if row is None:
                try:
                    self.compute.create(PLATFORM, cpb.ResourceRef(
                        kind="deployment", id=deployment_id, compute_cluster_id=SHARED_CLUSTER,
                        nodepool_id=SHARED_NODEPOOL), {"worker": {"model": {
                            "id": key[2], "user_id": key[0], "app_id": key[1]}}})
                except AlreadyExists:
                    pass  # another caller started it a moment ago
            else:
                self.compute.act(PLATFORM, cpb.ResourceRef(kind="deployment", id=deployment_id), "start")
        return self.store.one("SELECT * FROM deployments WHERE user_id = ? AND id = ?", (PLATFORM, deployment_id))


class _Starting(Exception):
    """No replica serves yet, but one is coming up: the client should resolve again shortly."""

    def __init__(self, reason: str):
        self.reason = reason


def _deployment_id(model_id: str) -> str:
    """The id part of a platform model's shared deployment (``shared<id>``: made by the daemon, never typed)."""
    return ids.as_deployment_id(model_id) or "deployment"


def _suggested_id(model_id: str) -> str:
    """A deployment id to suggest for a model: its own id, as deploy takes it, where it is one."""
    return model_id if ids.rule_problem("deployment", model_id) is None else _deployment_id(model_id)[:64]
