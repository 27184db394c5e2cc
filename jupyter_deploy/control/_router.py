"""Route resolution: which runner serves a call, and the token that lets the caller in.

In this order (the Clarifai seed's): the given deployment; else the given
compute cluster + nodepool; else the model owner's default deployment (the
one marked ``default``, else the model's only one). Anything else is a clear
error that says what to do.
"""

from __future__ import annotations

from typing import Any

from .. import _tokens
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb
from ._errors import FailedPrecondition, InvalidArgument, NotFound
from ._store import Store, now


class Router:
    def __init__(self, store: Store, registry: Any, scheduler: Any, ttl: float = _tokens.DEFAULT_TTL):
        self.store, self.registry, self.scheduler, self.ttl = store, registry, scheduler, ttl

    def resolve(self, caller: str, req: cpb.RouteRequest) -> cpb.Route:
        model = req.model
        model_user = model.user_id or caller
        model_app = model.app_id or "default"
        if req.deployment_id and (req.compute_cluster_id or req.nodepool_id):
            raise InvalidArgument("give deployment_id, or compute_cluster_id with nodepool_id, not both")
        if bool(req.compute_cluster_id) != bool(req.nodepool_id):
            raise InvalidArgument("compute_cluster_id and nodepool_id go together; give both")
        owner = req.user_id or caller
        live = "desired != 'deleted'"
        if req.deployment_id:
            row = self.store.one(f"SELECT * FROM deployments WHERE user_id = ? AND id = ? AND {live}",
                                 (owner, req.deployment_id))
            if row is None:
                raise NotFound(f"deployment {req.deployment_id!r} not found for user {owner!r}")
            if model.model_id and (row["model_user_id"], row["model_app_id"], row["model_id"]) != (
                    model_user, model_app, model.model_id):
                raise InvalidArgument(
                    f"deployment {req.deployment_id!r} serves {row['model_user_id']}/{row['model_app_id']}/"
                    f"{row['model_id']}, not {model_user}/{model_app}/{model.model_id}")
        else:
            if not model.model_id:
                raise InvalidArgument("name the model (model_id) or the deployment (deployment_id)")
            key = (model_user, model_app, model.model_id)
            if req.compute_cluster_id:
                row = self.store.one(
                    f"SELECT * FROM deployments WHERE user_id = ? AND compute_cluster_id = ? AND nodepool_id = ? "
                    f"AND model_user_id = ? AND model_app_id = ? AND model_id = ? AND {live}",
                    (owner, req.compute_cluster_id, req.nodepool_id, *key))
                if row is None:
                    raise NotFound(f"model {'/'.join(key)} has no deployment on nodepool "
                                   f"{req.compute_cluster_id}/{req.nodepool_id}")
            else:
                row = self._default(key)
        address, version_id = self.scheduler.route(row["user_id"], row["id"])
        version = self.registry.get_version(cpb.VersionRef(version_id=version_id))
        token = _tokens.sign(bytes.fromhex(row["signing_key"]), deployment_id=row["id"], caller=caller,
                             ttl=self.ttl)
        return cpb.Route(address=address, token=token, expires_at=now() + self.ttl,
                         deployment_id=row["id"], version_id=version_id,
                         description=version.description if version.HasField("description")
                         else pb.ModelDescription())

    def _default(self, key: tuple[str, str, str]) -> Any:
        rows = self.store.query(
            "SELECT * FROM deployments WHERE user_id = ? AND model_user_id = ? AND model_app_id = ? "
            "AND model_id = ? AND desired != 'deleted' ORDER BY id", (key[0], *key))
        marked = [r for r in rows if r["is_default"]]
        if marked:
            return marked[0]
        if len(rows) == 1:
            return rows[0]
        name = "/".join(key)
        if rows:
            raise FailedPrecondition(
                f"model {name} has {len(rows)} deployments ({', '.join(r['id'] for r in rows)}) and none is "
                "the default: pass deployment_id=..., or mark one with default: true")
        raise FailedPrecondition(
            f"model {name} has no deployment; create one, e.g. "
            f"Nodepool('local', compute_cluster_id='local').create_deployment('{_deployment_id(key[2])}', "
            f"worker={{'model': {{'id': '{key[2]}'}}}}) or `jupyter-deploy deployment create`")


def _deployment_id(model_id: str) -> str:
    return "".join(ch for ch in model_id if ch.isalnum()) or "deployment"
