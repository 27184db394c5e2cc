"""What the sidebar sees: the public client's objects as JSON-ready dicts, and its actions.

One ``PanelAPI`` per Jupyter server holds one :class:`~jupyter_deploy.client.Client`
(as the local user, or ``JUPYTER_DEPLOY_PAT``). Its methods block on gRPC, so the
handlers run them in a thread; a dropped daemon connection is re-made on the next call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..client import Client, Deployment, Event, Model
from ..errors import ControlPlaneError, DeployError

T = TypeVar("T")

#: Lines of the replicas' log shown in a deployment's details.
LOG_TAIL = 100


class DaemonUnavailable(DeployError):
    """No daemon answers; the panel says so once, with a Start button, and keeps polling."""


class PanelAPI:
    """The sidebar's view of one user's clusters, nodepools, deployments and models.

    Example::

        api = PanelAPI()
        [d["state"] for d in api.deployments()]      # ['RUNNING', ...]
        api.act("echo", "stop")
    """

    def __init__(self, address: str | None = None, pat: str | None = None):
        self.address, self.pat = address or None, pat or None
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _with_client(self, fn: Callable[[Client], T]) -> T:
        from ..client._daemon import DaemonNotRunning

        with self._lock:
            if self._client is None:
                try:
                    # Opening JupyterLab must not start a daemon: the panel offers to (start_daemon).
                    self._client = Client(pat=self.pat, address=self.address, autostart=False)
                except ControlPlaneError:
                    raise
                except DaemonNotRunning:
                    where = f" at {self.address}" if self.address else ""
                    raise DaemonUnavailable(f"No jupyter_deploy daemon is running{where}.") from None
                except DeployError as e:
                    raise DaemonUnavailable(str(e)) from None
            client = self._client
        try:
            return fn(client)
        except ControlPlaneError as e:
            if e.code == "UNAVAILABLE":
                self.close()
                raise DaemonUnavailable(f"The jupyter_deploy daemon at {client.address} does not answer.") from None
            raise

    def start_daemon(self) -> dict:
        """Start the daemon in the background, as the first ``Client()`` in a notebook does (nothing
        to do when one answers); its address and the user it serves here.

        Example::

            PanelAPI().start_daemon()   # {'address': '127.0.0.1:40123', 'user_id': 'local'}
        """
        with self._lock:
            if self._client is None:
                self._client = Client(pat=self.pat, address=self.address, autostart=True)
            client = self._client
        return {"address": client.address, "user_id": client.user_id}

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------ compute

    def clusters(self) -> list[dict]:
        def run(client: Client) -> list[dict]:
            return [{"id": c.id, "user_id": c.resource.user_id, "cloud_provider": c.config.get("cloud_provider"),
                     "region": c.config.get("region", ""), "description": c.config.get("description", ""),
                     "ray_address": c.config.get("ray_address", ""), "nodes": c.to_dict()["nodes"]}
                    for c in client.list_compute_clusters()]
        return self._with_client(run)

    def nodepools(self) -> list[dict]:
        def run(client: Client) -> list[dict]:
            return [{"id": n.id, "compute_cluster_id": n.resource.compute_cluster_id,
                     "user_id": n.resource.user_id, "instance": n.config.get("instance_type"),
                     "min_instances": n.config.get("min_instances"),
                     "max_instances": n.config.get("max_instances")}
                    for c in client.list_compute_clusters() for n in c.list_nodepools()]
        return self._with_client(run)

    # ------------------------------------------------------------ deployments

    def deployments(self) -> list[dict]:
        return self._with_client(lambda client: [deployment_view(d) for d in client.list_deployments()])

    def deployment(self, deployment_id: str) -> dict:
        def run(client: Client) -> dict:
            dep = client.deployment(deployment_id).refresh()
            view = deployment_view(dep)
            view["logs"] = dep.logs(LOG_TAIL)
            view["metrics"] = dep.metrics()
            return view
        return self._with_client(run)

    def act(self, deployment_id: str, action: str) -> dict:
        def run(client: Client) -> dict:
            dep = client.deployment(deployment_id)
            dep.start() if action == "start" else dep.stop()
            return deployment_view(dep)
        return self._with_client(run)

    def delete_deployment(self, deployment_id: str) -> None:
        self._with_client(lambda client: client.deployment(deployment_id).delete())

    def watch(self, timeout: float) -> Iterator[Event]:
        """The daemon's pushed deployment state changes, for ``timeout`` seconds (the change watcher)."""
        events = self._with_client(lambda client: client.watch(["deployment"], timeout=timeout))
        try:
            yield from events
        except ControlPlaneError as e:
            if e.code == "UNAVAILABLE":
                self.close()
                raise DaemonUnavailable(str(e)) from None
            raise

    # ------------------------------------------------------------ models

    def models(self) -> list[dict]:
        def run(client: Client) -> list[dict]:
            out = []
            for info in client.list_models():
                ref = info.proto.ref
                model = Model(model_id=ref.model_id, app_id=ref.app_id, user_id=ref.user_id, client=client)
                out.append({
                    "id": ref.model_id, "user_id": ref.user_id, "app_id": ref.app_id,
                    "url": f"{ref.user_id}/{ref.app_id}/models/{ref.model_id}",
                    "visibility": info.proto.visibility or "private",
                    "versions": [{"id": v.id, "number": v.number, "created_at": v.proto.created_at,
                                  "methods": [m.name for m in v.proto.description.methods]}
                                 for v in sorted(model.list_versions(), key=lambda v: -v.number)]})
            return out
        return self._with_client(run)

    def delete_version(self, user_id: str, app_id: str, model_id: str, version_id: str) -> None:
        self._with_client(lambda client: Model(model_id=model_id, app_id=app_id, user_id=user_id,
                                               client=client).delete(version_id=version_id))


def deployment_view(dep: Deployment) -> dict[str, Any]:
    res = dep.resource
    status = json.loads(res.status_json or "{}")
    config = json.loads(res.config_json or "{}")
    replicas = [{"id": r["id"], "state": r["state"], "address": r["address"], "version_id": r["version_id"]}
                for r in status.get("replicas", [])]
    ready = [r["address"] for r in replicas if r["state"] == "READY" and r["address"]]
    model_url = status.get("model") or ""
    return {
        "id": res.id, "user_id": res.user_id, "compute_cluster_id": res.compute_cluster_id,
        "nodepool_id": res.nodepool_id, "model_url": model_url, "model_id": model_url.rsplit("/", 1)[-1],
        "version_id": status.get("version_id"), "version_number": status.get("version_number"),
        "state": status.get("state", "UNKNOWN"), "reason": status.get("reason", ""),
        "replicas": replicas, "desired_replicas": _desired_replicas(config),
        "endpoint": ready[0] if ready else None, "config": config, "created_at": res.created_at,
    }


def _desired_replicas(config: dict) -> int | None:
    scale = config.get("autoscale_config") or {}
    value = scale.get("min_replicas", config.get("min_replicas"))
    return value if isinstance(value, int) else None
