"""The public Python API over the control plane: Client, ComputeCluster, Nodepool, Deployment, Model.

Names follow the Clarifai SDK. Objects made without ``client=`` share one
default ``Client()``, which starts a local daemon when none answers::

    from jupyter_deploy import Client, Model, Nodepool

    client = Client()
    client.upload_model("notebooks/models/echo")
    Nodepool("local", compute_cluster_id="local").create_deployment(
        "echo", worker={"model": {"id": "echo"}}).wait_until_ready()
    Model("local/default/models/echo").predict("hi")
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc

from .. import _wire
from ..errors import ControlPlaneError, DeployError, RunnerError
from ..model.signature import method_from_proto
from ..proto import control_pb2 as cpb
from ..proto import control_pb2_grpc, runner_pb2_grpc
from ..proto import runner_pb2 as pb
from ._combine import IN_FLIGHT, Combiner
from ._errors import control_error
from ._methods import MethodMirror
from ._rollout import Readiness, Rollout, deployment_id_for, model_folder, roll_out, wait_ready
from ._runner_client import GrpcTransport
from ._watch import Event, RouteWatch, changes, ticks, watch

ROUTING = ("deployment_id", "compute_cluster_id", "nodepool_id")
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
#: A route's calls to a replica take one of up to this many connections (see ``Client.route_channel``).
ROUTE_CONNECTIONS = 16
_ROUTE_CHANNEL_OPTIONS = [*_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]


def _hot_mode(hot: bool | None) -> str:
    """``Deployment.update``'s ``hot`` as an UpdateRequest says it."""
    if hot is not None and not isinstance(hot, bool):
        raise TypeError(f"hot is True, False or None (swap when possible), not {hot!r}")
    return "auto" if hot is None else "require" if hot else "never"


def _read_config(config_filepath: str | Path | None, config: dict) -> dict:
    """A YAML config file's mapping with keyword arguments merged over it."""
    data: dict = {}
    if config_filepath is not None:
        import yaml

        path = Path(config_filepath)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ControlPlaneError(f"no such config file: {path}", "INVALID_ARGUMENT") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ControlPlaneError(f"{path}: {where}not valid YAML: {problem}", "INVALID_ARGUMENT") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ControlPlaneError(f"{path}: expected a mapping at the top level", "INVALID_ARGUMENT")
        data = dict(loaded or {})
        # Clarifai's files wrap the fields in the resource's own key.
        for key in ("compute_cluster", "nodepool", "deployment"):
            if set(data) == {key} and isinstance(data[key], dict):
                data = dict(data[key])
    data.update(config)
    return data


class Client:
    """A connection to the control plane, as one user.

    Args:
        pat: a personal access token (default: ``JUPYTER_DEPLOY_PAT``, else the
            local user's token file).
        address: the daemon's ``HOST:PORT`` (default: ``JUPYTER_DEPLOY_ADDRESS``,
            else the discovery file, else a new local daemon).
        timeout: seconds each model call (a whole stream included) may take;
            None (the default) sets no deadline.

    Example::

        client = Client()
        version = client.upload_model("models/echo")
        print(client.list_deployments().to_dataframe())
    """

    def __init__(self, pat: str | None = None, address: str | None = None, *, autostart: bool = True,
                 timeout: float | None = None):
        from ._daemon import connect

        self.timeout = timeout  # seconds each model call may take (None: no deadline)
        # Kept to find the daemon again, the same way, after it restarted (see _reconnect).
        self._connect_args = {"address": address, "pat": pat, "autostart": autostart}
        self._channel, self.address, self._metadata = connect(**self._connect_args)
        self._stub = control_pb2_grpc.ControlPlaneStub(self._channel)
        self._reconnect_lock = threading.Lock()
        self._runner_channels: dict[str, grpc.Channel] = {}
        self._route_channels: dict[str, list[grpc.Channel]] = {}  # address -> up to ROUTE_CONNECTIONS
        self._route_turn = itertools.count()
        self._combiners: dict[str, Combiner] = {}  # address -> its runner's (see ``combiner``)
        self._combine = _wire.combining(os.environ)
        self._lock = threading.Lock()
        self._routes = RouteWatch(self._stub, self._metadata)
        weakref.finalize(self, self._routes.close)
        self.user_id = self.call("GetInfo", cpb.InfoRequest()).user_id

    def __repr__(self) -> str:
        return f"<Client user={self.user_id} at {self.address}>"

    @property
    def gateway_url(self) -> str | None:
        """The base URL of the daemon's HTTP gateway (REST, Open Inference Protocol, OpenAI-compatible),
        e.g. ``http://127.0.0.1:8000``; None when it runs none."""
        return self.call("GetInfo", cpb.InfoRequest()).gateway_url or None

    def call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        """One control-plane RPC with this client's credentials (errors as ControlPlaneError).

        When the daemon does not answer (UNAVAILABLE), it is found again (it may have restarted
        on another port) and the call is made once more."""
        return self._control(lambda stub, metadata: getattr(stub, method)(
            request, timeout=timeout, metadata=metadata))

    def _control(self, rpc: Callable[[Any, Any], Any]) -> Any:
        """``rpc(stub, metadata)``, once more on the daemon found again if it raised UNAVAILABLE;
        errors as ControlPlaneError."""
        stub = self._stub
        try:
            return rpc(stub, self._metadata)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or not self._reconnect(stub):
                raise control_error(e) from None
        try:
            return rpc(self._stub, self._metadata)
        except grpc.RpcError as e:
            raise control_error(e) from None

    def _reconnect(self, failed: Any) -> bool:
        """Find the daemon again after a call on the stub ``failed`` got UNAVAILABLE: re-read the
        discovery file, or start a daemon where ``Client()`` would, and swap the channel in place
        (every Model and Deployment made from this client follows). False if none answers."""
        from ._daemon import connect

        with self._reconnect_lock:
            if self._stub is not failed:  # another thread found it already
                return True
            try:
                channel, address, metadata = connect(**self._connect_args)
            except DeployError:
                return False
            old, self._channel = self._channel, channel
            self.address, self._metadata = address, metadata
            self._stub = control_pb2_grpc.ControlPlaneStub(channel)
            self._routes.follow(self._stub, metadata)
        old.close()
        return True

    def runner_channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._runner_channels.get(address)
            if channel is None:
                channel = self._runner_channels[address] = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
            return channel

    def route_channel(self, address: str) -> grpc.Channel:
        """A channel to a replica for one ``Model``'s route: each of the first ``ROUTE_CONNECTIONS``
        routes to an address gets a connection of its own, later ones share them in turn.

        Sixteen threads, each calling through its own ``Model``, over one shared connection
        (``runner_channel``) went a median 0.88x as fast as the bare-grpcio floor, whose clients
        each have their own; with a connection per route, 1.00x (W1b of ../shared/peers, four
        interleaved rounds on a quiet machine, faster than the shared connection in every round:
        1.05-1.19x). The bound keeps a program that makes many ``Model`` objects from
        opening a socket for each.
        """
        with self._lock:
            channels = self._route_channels.setdefault(address, [])
            if len(channels) < ROUTE_CONNECTIONS:
                channels.append(grpc.insecure_channel(address, options=_ROUTE_CHANNEL_OPTIONS))
                return channels[-1]
            return channels[next(self._route_turn) % len(channels)]

    def combiner(self, address: str) -> Combiner | None:
        """This client's ``Combiner`` of unary calls to the runner at ``address``: calls made
        while others are out go together in one RPC (see ``_combine``); None where
        ``JUPYTER_DEPLOY_COMBINE=0`` turned combining off."""
        if not self._combine:
            return None
        with self._lock:
            combiner = self._combiners.get(address)
        if combiner is None:
            channels = [self.route_channel(address) for _ in range(IN_FLIGHT)]
            with self._lock:
                combiner = self._combiners.setdefault(address, Combiner(channels))
        return combiner

    def close(self) -> None:
        self._routes.close()
        for channel in self._runner_channels.values():
            channel.close()
        with self._lock:
            route_channels = [c for channels in self._route_channels.values() for c in channels]
        for channel in route_channels:
            channel.close()
        self._channel.close()

    # ------------------------------------------------------------ registry

    def upload_model(self, model_path: str | Path, *, model_id: str | None = None,
                     app_id: str | None = None, user_id: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> "ModelVersionInfo":
        """Upload a model folder as a new immutable version (identical content is not stored twice).

        ``model_path`` may also be a ZIP written by :meth:`Model.export` (imported with the
        same content hash) or another platform's package (a Clarifai folder, an MLflow model,
        an Oracle ADS artifact, a Hopsworks predictor; see ``jupyter_deploy.formats``), whose
        model id is its folder's or ZIP's name unless ``model_id`` is given.

        Signatures are read in this interpreter (the class is imported, ``load_model``
        is not called), and this interpreter is recorded to run the version.
        ``user_id="platform"`` (the admin only) installs a model every user may call,
        served on demand by the shared nodepool. ``progress(sent, total)`` is told the bytes of
        the model's archive sent so far, chunk by chunk (a large checkpoint folder takes a while).
        """
        from ..paths import home
        from ._upload import upload_chunks

        # Through the same door as deploy: another platform's package or a ZIP is converted here.
        folder, model_id = model_folder(model_path, model_id, home() / "notebook_models")
        ref = cpb.ModelRef(user_id=user_id or self.user_id, app_id=app_id or "", model_id=model_id or "")
        version = self._control(lambda stub, metadata: stub.UploadModel(
            upload_chunks(folder, ref, on_sent=progress), timeout=600, metadata=metadata))
        return ModelVersionInfo(version)

    def deploy(self, source: str | Path, model_id: str | None = None, *, deployment_id: str | None = None,
               nodepool_id: str | None = "local", compute_cluster_id: str | None = "local",
               wait: bool = True, timeout: float = 600.0, app_id: str | None = None,
               progress: Callable[[Rollout], None] | None = None, hot: bool | None = None,
               **config: Any) -> "Deployment":
        """Deploy a model from source, the one way every front end deploys.

        ``source`` is a model folder, a ``model.py`` path, a cell's source text, or another
        platform's package or a ZIP (``jupyter_deploy.formats``). Uploads a new version if the
        content changed, creates the deployment or rolls it out, starts it if stopped, and
        (``wait``) waits until it is ready, on pushed state changes.

        Args:
            model_id: default: the folder's ``config.yaml`` (for a ``model.py``, that of the
                folder it sits in); required for source text.
            deployment_id: default: the model id, as it is (a deployment takes its model's id).
            nodepool_id, compute_cluster_id: where to deploy (None: where the deployment
                already is, else ``local``). An existing deployment is never moved.
            timeout: seconds to wait until ready.
            app_id: the model's app (default: config.yaml's, else ``default``).
            progress: called with the :class:`Rollout` as it proceeds: while uploading
                (``rollout.uploaded`` bytes), then on each change and about each second while
                it waits (``rollout.readiness``, with each starting replica's step: building
                its environment, importing model.py, ``load_model()``, ``test()``);
                ``rollout.describe()`` says it in one line.
            hot: a new version whose only change is method bodies is swapped into the running
                replicas, keeping their loaded state (hot reload: no weights loaded again).
                ``None``: when it can; ``False``: never, new replicas start; ``True``: swap, or
                raise DeploymentError saying why before the deployment changes.
            **config: deployment config keys (``autoscale_config``, ``inference_batcher``,
                ``inference_logger``, ``transformer``, ``secrets``, ``resources``, ``run_test``, ...).

        Returns the Deployment; its ``rollout`` says what the deploy did.

        Raises:
            DeploymentError: it failed or was not ready in time. When the model's own code
                raised on its first replica (``load_model()``, ``test()``, importing model.py),
                at once, with that exception: ``e.model_error`` (type, message, the model's
                frames) and ``e.failed_step``; no replica is restarted for it.
            ModelDefinitionError, ConfigError: the folder cannot be served as written (found
                before anything is uploaded).

        Examples::

            from jupyter_deploy import Client
            client = Client()                                # starts the local daemon if needed

            dep = client.deploy("models/echo")               # a folder: config.yaml names the model
            dep.rollout.summary()       # 'echo v1: deployment echo RUNNING on local/local, 1 replica, ...'
            client.model("echo").predict("hi")

            # Source text (a cell), two replicas at least, a line of progress as it goes:
            client.deploy(source, "sentiment", autoscale_config={"min_replicas": 2},
                          progress=lambda r: print(r.describe()))

            # Another nodepool, a deployment id of your own, batching on:
            client.deploy("models/echo", deployment_id="echo-gpu", nodepool_id="gpu",
                          inference_batcher={"enabled": True, "max_batch_size": 16})

            # Why it failed:
            try:
                client.deploy("models/broken")
            except DeploymentError as e:
                print(e.failed_step, e.model_error)      # e.g. load_model RuntimeError: ...
                print(e.model_error.remote_traceback)

            # After changing only predict()'s body: swapped into the running replicas.
            client.deploy("models/echo").rollout.action      # 'hot reload'
        """
        from ..paths import home

        started = time.monotonic()
        folder, model_id = model_folder(source, model_id, home() / "notebook_models")
        deployment_id = deployment_id or deployment_id_for(model_id)  # before uploading anything
        uploading = Rollout(deployment_id, compute_cluster_id or "local", nodepool_id or "local", None, "upload",
                            started, model_id=model_id)

        def sent(done: int, total: int) -> None:
            uploading.uploaded = (done, total)
            progress(uploading)

        version = self.upload_model(folder, model_id=model_id, app_id=app_id,
                                    progress=sent if progress is not None else None)
        # Where the upload went (config.yaml may name another app than "default").
        ref = version.proto.model
        model = (ref.user_id or self.user_id, ref.app_id or app_id or "default", ref.model_id or model_id)
        return roll_out(self, model, version,
                        deployment_id=deployment_id,
                        nodepool_id=nodepool_id, compute_cluster_id=compute_cluster_id, wait=wait,
                        timeout=timeout, progress=progress, config=config, started=started, hot=hot)

    def watch(self, kinds: list[str] | None = None, ids: list[str] | None = None, *,
              user_id: str | None = None, timeout: float | None = None) -> Iterator[Event]:
        """The control plane's state changes, pushed as they commit.

        First the current state of what is asked for (events with ``initial`` set), then
        an event of kind ``"synced"``, then one :class:`Event` per change, until
        ``timeout`` seconds pass (None: until the iterator is closed).

        Args:
            kinds: ``"deployment"``, ``"replica"``, ``"route"`` (default: all three).
            ids: deployment ids (default: every deployment of the user).
            user_id: whose deployments (default: this client's user; the admin may give ``"*"``).

        Example::

            for event in Client().watch(["deployment"], ["echo"], timeout=30):
                print(event.kind, event.state, event.reason)
        """
        return watch(self, kinds, ids, user_id, timeout)

    def model(self, model_id: str, *, app_id: str = "default", user_id: str | None = None) -> "Model":
        return Model(model_id=model_id, app_id=app_id, user_id=user_id or self.user_id, client=self)

    def list_models(self, app_id: str | None = None, user_id: str | None = None) -> "Listing":
        """This user's models, or another user's public ones (``user_id=``)."""
        resp = self.call("ListModels", cpb.ListModelsRequest(user_id=user_id or self.user_id,
                                                             app_id=app_id or ""))
        return Listing(ModelInfo(m) for m in resp.models)

    # ------------------------------------------------------------ compute

    def create_compute_cluster(self, compute_cluster_id: str, config_filepath: str | Path | None = None,
                               **config: Any) -> "ComputeCluster":
        """Create a compute cluster (fields: cloud_provider, region, description)."""
        ref = cpb.ResourceRef(kind="compute_cluster", id=compute_cluster_id, user_id=self.user_id)
        res = self.call("Create", cpb.CreateRequest(ref=ref, config_json=json.dumps(
            _read_config(config_filepath, config))))
        return ComputeCluster(compute_cluster_id, client=self, _resource=res)

    def compute_cluster(self, compute_cluster_id: str) -> "ComputeCluster":
        return ComputeCluster(compute_cluster_id, user_id=self.user_id, client=self)

    def list_compute_clusters(self) -> "Listing":
        resp = self.call("List", cpb.ListRequest(parent=cpb.ResourceRef(kind="compute_cluster")))
        return Listing(ComputeCluster(r.id, client=self, _resource=r) for r in resp.resources)

    def delete_compute_clusters(self, compute_cluster_ids: list[str]) -> None:
        self.call("Delete", cpb.DeleteRequest(refs=[
            cpb.ResourceRef(kind="compute_cluster", id=i) for i in compute_cluster_ids]))

    def list_deployments(self, compute_cluster_id: str | None = None,
                         nodepool_id: str | None = None) -> "Listing":
        """All of this user's deployments, optionally of one cluster or nodepool."""
        parent = cpb.ResourceRef(kind="deployment", compute_cluster_id=compute_cluster_id or "",
                                 nodepool_id=nodepool_id or "")
        resp = self.call("List", cpb.ListRequest(parent=parent))
        return Listing(Deployment(deployment_id=r.id, client=self, _resource=r) for r in resp.resources)

    def deployment(self, deployment_id: str) -> "Deployment":
        return Deployment(deployment_id=deployment_id, user_id=self.user_id, client=self)

    # ------------------------------------------------------------ users and tokens

    def create_user(self, user_id: str) -> tuple[str, str]:
        """Admin only: a new user (with its app ``default``); returns ``(user_id, token)``.

        The token is shown only here, once: give it to the user (``Client(pat=...)`` or
        ``JUPYTER_DEPLOY_PAT``).
        """
        resp = self.call("CreateUser", cpb.CreateUserRequest(user_id=user_id))
        return resp.user.id, resp.token.token

    def list_users(self) -> list[dict]:
        """Admin only: every user as ``{"id", "created_at", "admin"}``."""
        return [{"id": u.id, "created_at": u.created_at, "admin": u.admin}
                for u in self.call("ListUsers", cpb.ListUsersRequest()).users]

    def create_token(self) -> tuple[str, str]:
        """A new token for this user; returns ``(token_id, token)`` (the token is shown only here)."""
        resp = self.call("CreateToken", cpb.CreateTokenRequest())
        return resp.id, resp.token

    def list_tokens(self) -> list[dict]:
        """This user's tokens as ``{"id", "created_at", "revoked_at"}`` (None while valid), never their text."""
        return [_token_dict(t) for t in self.call("ListTokens", cpb.ListTokensRequest()).tokens]

    def revoke_token(self, token_id: str) -> dict:
        """Revoke one of this user's tokens; it stops working at once with the control plane, and
        model calls through routes it resolved before fail within a route token's life (10 s)."""
        return _token_dict(self.call("RevokeToken", cpb.RevokeTokenRequest(token_id=token_id)))

    def limits(self, user_id: str | None = None) -> dict[str, dict]:
        """This user's limits on the daemon (``limits.yaml``; another user's: the admin only), each as
        ``{"value", "used", "description"}`` (``used`` is None for a setting that counts nothing).

        Example::

            Client().limits()["max_replicas"]   # {'value': 16.0, 'used': 3.0, 'description': '...'}
        """
        resp = self.call("GetLimits", cpb.LimitsRequest(user_id=user_id or ""))
        return {lim.name: {"value": lim.value, "used": lim.used if lim.HasField("used") else None,
                           "description": lim.description} for lim in resp.limits}

    # ------------------------------------------------------------ secrets

    def set_secret(self, name: str, value: str) -> None:
        """Create or replace a secret; deployments expose it with ``secrets=[{"id": name, "env_var": VAR}]``.

        The value is stored on the daemon's host in a file only its user can read,
        and is never returned, listed or logged.
        """
        self.call("SetSecret", cpb.SetSecretRequest(name=name, value=value))

    def list_secrets(self) -> list[str]:
        """The names of this user's secrets (never their values)."""
        return [s.name for s in self.call("ListSecrets", cpb.ListSecretsRequest()).secrets]

    def delete_secret(self, name: str) -> None:
        """Delete a secret (NotFoundError if there is none by that name)."""
        self.call("DeleteSecret", cpb.DeleteSecretRequest(name=name))


def _epoch(since: Any) -> float:
    """``since`` for a log query as epoch seconds (0: no bound)."""
    import datetime

    if since is None:
        return 0.0
    if isinstance(since, datetime.timedelta):
        return time.time() - since.total_seconds()
    if isinstance(since, datetime.datetime):
        return since.timestamp()  # a naive datetime is local time, as Python reads it
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    timestamp = getattr(since, "timestamp", None)  # a pandas Timestamp
    if callable(timestamp):
        return float(timestamp())
    raise ValueError(f"since: expected a datetime, a timedelta or epoch seconds, got {type(since).__name__}")


def _token_dict(t: cpb.TokenInfo) -> dict:
    return {"id": t.id, "user_id": t.user_id, "created_at": t.created_at, "revoked_at": t.revoked_at or None}


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The Client that objects made without ``client=`` share (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


# ---------------------------------------------------------------- listings


class Listing(list):
    """A list of resources; ``.to_dataframe()`` gives a pandas table of their fields."""

    def to_dataframe(self) -> Any:
        return to_dataframe(self)


def to_dataframe(listing: Any) -> Any:
    """A pandas DataFrame with one row per resource, one column per field.

    Example::

        to_dataframe(Client().list_deployments())[["id", "state", "replicas"]]
    """
    import pandas as pd

    return pd.DataFrame([item.to_dict() for item in listing])


class _Resource:
    kind = ""

    def __init__(self, client: Client | None, resource: cpb.Resource | None):
        self._client = client
        self._resource = resource

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = default_client()
        return self._client

    def _ref(self) -> cpb.ResourceRef:
        raise NotImplementedError

    def refresh(self) -> "_Resource":
        self._resource = self.client.call("Get", self._ref())
        return self

    @property
    def resource(self) -> cpb.Resource:
        if self._resource is None:
            self.refresh()
        return self._resource

    @property
    def config(self) -> dict:
        return json.loads(self.resource.config_json or "{}")

    def to_dict(self) -> dict:
        res = self.resource
        return {"id": res.id, "user_id": res.user_id, "compute_cluster_id": res.compute_cluster_id,
                "nodepool_id": res.nodepool_id, **self.config, "created_at": res.created_at}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class ComputeCluster(_Resource):
    """A compute cluster: where nodepools live (``local`` is this host).

    Example::

        cluster = ComputeCluster(compute_cluster_id="local")
        cluster.create_nodepool("gpus", instance_type={"accelerators": 1})
        cluster.list_nodepools().to_dataframe()
    """

    def __init__(self, compute_cluster_id: str, user_id: str | None = None, *, client: Client | None = None,
                 _resource: cpb.Resource | None = None):
        super().__init__(client, _resource)
        self.id = compute_cluster_id
        self.user_id = user_id

    def _ref(self) -> cpb.ResourceRef:
        return cpb.ResourceRef(kind="compute_cluster", id=self.id, user_id=self.user_id or "")

    def describe(self) -> dict:
        """Where the cluster runs replicas, as the daemon sees it now.

        ``{"cloud_provider", "ray_address", "nodes": [{"node_id", "labels", "cpus", "memory", "gpus"}]}``:
        a ``ray`` cluster's nodes as Ray reports them (with ``"error"`` when it does not answer);
        ``local`` is this host, as one node.

        Example::

            ComputeCluster("gpus").describe()["nodes"][0]["labels"]   # {'pool': 'gpu'}
        """
        return json.loads(self.refresh().resource.status_json or "{}")

    def to_dict(self) -> dict:
        status = json.loads(self.resource.status_json or "{}")
        return {**super().to_dict(), "nodes": status.get("nodes", []),
                **({"error": status["error"]} if status.get("error") else {})}

    def create_nodepool(self, nodepool_id: str, config_filepath: str | Path | None = None,
                        **config: Any) -> "Nodepool":
        """Create a nodepool; every field defaults to this host (instance_type, min/max_instances)."""
        ref = cpb.ResourceRef(kind="nodepool", id=nodepool_id, compute_cluster_id=self.id,
                              user_id=self.user_id or "")
        res = self.client.call("Create", cpb.CreateRequest(ref=ref, config_json=json.dumps(
            _read_config(config_filepath, config))))
        return Nodepool(nodepool_id, self.id, self.user_id, client=self.client, _resource=res)

    def nodepool(self, nodepool_id: str) -> "Nodepool":
        return Nodepool(nodepool_id, self.id, self.user_id, client=self.client)

    def list_nodepools(self) -> Listing:
        parent = cpb.ResourceRef(kind="nodepool", compute_cluster_id=self.id, user_id=self.user_id or "")
        resp = self.client.call("List", cpb.ListRequest(parent=parent))
        return Listing(Nodepool(r.id, self.id, self.user_id, client=self.client, _resource=r)
                       for r in resp.resources)

    def delete_nodepools(self, nodepool_ids: list[str]) -> None:
        self.client.call("Delete", cpb.DeleteRequest(refs=[
            cpb.ResourceRef(kind="nodepool", id=i, compute_cluster_id=self.id, user_id=self.user_id or "")
            for i in nodepool_ids]))


class Nodepool(_Resource):
    """A nodepool of a cluster: where deployments run their replicas.

    Example::

        nodepool = Nodepool(nodepool_id="local", compute_cluster_id="local")
        nodepool.create_deployment("echo", worker={"model": {"id": "echo"}}).wait_until_ready()
    """

    def __init__(self, nodepool_id: str, compute_cluster_id: str = "local", user_id: str | None = None, *,
                 client: Client | None = None, _resource: cpb.Resource | None = None):
        super().__init__(client, _resource)
        self.id = nodepool_id
        self.compute_cluster_id = compute_cluster_id
        self.user_id = user_id

    def _ref(self) -> cpb.ResourceRef:
        return cpb.ResourceRef(kind="nodepool", id=self.id, compute_cluster_id=self.compute_cluster_id,
                               user_id=self.user_id or "")

    def create_deployment(self, deployment_id: str, config_filepath: str | Path | None = None,
                          **config: Any) -> "Deployment":
        """Deploy a model on this nodepool.

        Config keys (a YAML file or keyword arguments): ``worker: {model: {id, user_id,
        app_id, model_version: {id}}}``, ``autoscale_config: {min_replicas, max_replicas,
        target_in_flight_per_replica, scale_up_delay_seconds, scale_down_delay_seconds,
        scale_to_zero_delay_seconds}``, ``inference_logger: {mode, max_records, max_age_seconds,
        max_inline_bytes}``, ``inference_batcher: {enabled, max_batch_size, max_latency_ms,
        timeout_ms}`` (batches concurrent calls of ``batch=True`` methods), ``default: true|false``.

        Example::

            nodepool.create_deployment("echo", worker={"model": {"id": "echo"}},
                                       autoscale_config={"min_replicas": 0, "max_replicas": 4},
                                       inference_batcher={"max_batch_size": 32, "max_latency_ms": 5})
        """
        ref = cpb.ResourceRef(kind="deployment", id=deployment_id, compute_cluster_id=self.compute_cluster_id,
                              nodepool_id=self.id, user_id=self.user_id or "")
        res = self.client.call("Create", cpb.CreateRequest(ref=ref, config_json=json.dumps(
            _read_config(config_filepath, config))))
        return Deployment(deployment_id=deployment_id, user_id=self.user_id, client=self.client, _resource=res)

    def list_deployments(self) -> Listing:
        return self.client.list_deployments(self.compute_cluster_id, self.id)

    def delete_deployments(self, deployment_ids: list[str]) -> None:
        self.client.call("Delete", cpb.DeleteRequest(refs=[
            cpb.ResourceRef(kind="deployment", id=i, user_id=self.user_id or "") for i in deployment_ids]))


class Deployment(_Resource):
    """A deployment of a model on a nodepool (``user_id`` defaults to the caller).

    Example::

        dep = Deployment(deployment_id="echo")
        dep.state                      # 'RUNNING'
        dep.stop(); dep.start().wait_until_ready()
        dep.logs(20)
    """

    def __init__(self, deployment_id: str, user_id: str | None = None, *, client: Client | None = None,
                 _resource: cpb.Resource | None = None):
        super().__init__(client, _resource)
        self.id = deployment_id
        self.user_id = user_id
        #: What the deploy that returned this Deployment did (None when not made by a deploy).
        self.rollout: Rollout | None = None

    def _ref(self) -> cpb.ResourceRef:
        return cpb.ResourceRef(kind="deployment", id=self.id, user_id=self.user_id or "")

    @property
    def status(self) -> dict:
        """What the control plane observes now: state, reason, version, replicas."""
        return json.loads(self.refresh().resource.status_json or "{}")

    @property
    def state(self) -> str:
        """CREATING, STARTING, RUNNING, IDLE (scaled to zero), UPDATING, STOPPING, STOPPED or FAILED."""
        return self.status["state"]

    def to_dict(self) -> dict:
        status = json.loads(self.resource.status_json or "{}")
        return {"id": self.id, "compute_cluster_id": self.resource.compute_cluster_id,
                "nodepool_id": self.resource.nodepool_id, "model": status.get("model"),
                "version": status.get("version_number"), "state": status.get("state"),
                "replicas": len(status.get("replicas", [])), "default": status.get("default"),
                "reason": status.get("reason", "")}

    def describe(self) -> dict:
        """The deployment at a glance: its state, config and ``endpoints`` on the HTTP gateway (the
        REST URL of each method, WebSocket, OpenAI-compatible and Open Inference Protocol bases, and
        a ready-to-paste ``curl`` line for the model's first method; empty without a gateway).

        Example::

            print(Deployment("echo").describe()["endpoints"]["curl"])
            # curl -X POST http://127.0.0.1:8000/v1/deployments/echo/methods/predict -H ... -d '{"text": "hello"}'
        """
        from ._endpoints import endpoints

        status = self.status
        res = self.resource
        specs: list = []
        if status.get("version_id") and status.get("model"):
            version = self.client.call("GetVersion", cpb.VersionRef(
                model=cpb.ModelRef(**dict(zip(("user_id", "app_id", "model_id"), parse_model_url(status["model"])))),
                version_id=status["version_id"]))
            specs = [method_from_proto(m) for m in version.description.methods]
        info = self.client.call("GetInfo", cpb.InfoRequest())
        return {"id": self.id, "user_id": res.user_id, "compute_cluster_id": res.compute_cluster_id,
                "nodepool_id": res.nodepool_id, "model": status.get("model"), "version": status.get("version_number"),
                "version_id": status.get("version_id"), "state": status.get("state"), "reason": status.get("reason", ""),
                "replicas": len(status.get("replicas", [])), "config": self.config,
                "endpoints": endpoints(info.gateway_url, info.gateway_grpc_address, self.id, specs)}

    def start(self) -> "Deployment":
        self._resource = self.client.call("Act", cpb.ActionRequest(ref=self._ref(), action="start"))
        return self

    def stop(self) -> "Deployment":
        self._resource = self.client.call("Act", cpb.ActionRequest(ref=self._ref(), action="stop"))
        return self

    def update(self, config_filepath: str | Path | None = None, *, hot: bool | None = None,
               **config: Any) -> "Deployment":
        """Change the config (same keys as create). An unpinned model rolls out its latest version.

        A new version whose only change is method bodies (not ``load_model``, ``__init__``,
        class attributes, imports, ``requirements.txt`` or ``config.yaml``) is swapped into the
        running replicas, which keep their loaded state (hot reload), unless ``hot`` says
        otherwise: ``None`` swaps when it can, ``False`` always starts new replicas, ``True``
        refuses (ControlPlaneError, saying why, nothing changed) an update that cannot swap.
        ``status["hot_reload"]`` says which happened and why.

        Example::

            Deployment("echo").update(hot=True)    # the latest version, swapped in, or an error
        """
        self._resource = self.client.call("Update", cpb.UpdateRequest(ref=self._ref(), config_json=json.dumps(
            _read_config(config_filepath, config)), hot=_hot_mode(hot)))
        return self

    def delete(self) -> None:
        self.client.call("Delete", cpb.DeleteRequest(refs=[self._ref()]))

    def logs(self, lines: int = 200) -> list[str]:
        """The last lines of the replicas' stdout and stderr."""
        return list(self.client.call("Logs", cpb.LogsRequest(ref=self._ref(), lines=lines)).lines)

    def access_logs(self, since: Any = None, limit: int = 1000) -> Any:
        """One row per call its replicas served (a call served in a batch is still one row), oldest first.

        Columns: ``timestamp`` (UTC), ``request_id``, ``caller``, ``method``, ``status`` ("OK" or
        the gRPC status name), ``latency_ms``, ``bytes_in``, ``bytes_out``. The newest ``limit``
        records at or after ``since`` (a datetime, epoch seconds, or a timedelta back from now).
        Records reach the control plane within about a second of the call; only the
        deployment's owner may read them.

        Example::

            df = Deployment("echo").access_logs(since=datetime.timedelta(minutes=5))
            df.groupby("status").latency_ms.describe()
        """
        return self._call_logs(since, limit, inference=False)

    def inference_logs(self, since: Any = None, limit: int = 1000) -> Any:
        """``access_logs()`` plus ``inputs`` and ``outputs``, as the deployment's
        ``inference_logger: {mode: all | model_inputs | predictions | none}`` recorded them (None
        where not recorded). Values are JSON-like: media by ``size`` and ``sha256``, with the bytes
        (``data_b64``) when at most ``inference_logger.max_inline_bytes``.

        Example::

            nodepool.create_deployment("echo", worker={"model": {"id": "echo"}}, inference_logger={"mode": "all"})
            Model("local/default/models/echo").predict("hi")
            Deployment("echo").inference_logs()[["method", "inputs", "outputs"]]
            #   method          inputs     outputs
            # 0 predict  {'text': 'hi'}  'echo: hi'
        """
        return self._call_logs(since, limit, inference=True)

    def _call_logs(self, since: Any, limit: int, inference: bool) -> Any:
        import pandas as pd

        resp = self.client.call("CallLogs", cpb.CallLogsRequest(ref=self._ref(), since=_epoch(since),
                                                                limit=limit, inference=inference))
        columns = ["timestamp", "request_id", "caller", "method", "status", "latency_ms", "bytes_in", "bytes_out"]
        rows = [[getattr(r, c) for c in columns] for r in resp.records]
        if inference:
            columns += ["inputs", "outputs"]
            for row, r in zip(rows, resp.records):
                row += [json.loads(r.inputs_json) if r.inputs_json else None,
                        json.loads(r.outputs_json) if r.outputs_json else None]
        df = pd.DataFrame(rows, columns=columns)
        df["timestamp"] = pd.to_datetime(df["timestamp"].astype(float), unit="s", utc=True)
        return df

    def metrics(self) -> dict:
        """What the runners report: ``requests`` and ``errors`` (over the kept records) and in the last
        minute, ``p50_ms``/``p99_ms`` over the latest 1000 calls, ``in_flight`` and ``queue_depth`` now,
        ``ready_replicas``.

        Example::

            Deployment("echo").metrics()["p99_ms"]
        """
        return json.loads(self.client.call("Metrics", self._ref()).metrics_json)

    def wait_until_ready(self, timeout: float = 120.0, *,
                         progress: Callable[[Readiness], None] | None = None) -> "Deployment":
        """Block until the deployment serves its current version and settings with at least
        ``min_replicas`` READY replicas and no older replica takes new calls (or it scaled to
        zero: IDLE, the next call starts a replica). Waits on the control plane's pushed
        state changes; ``progress`` gets a :class:`Readiness` after each. DeploymentError (with
        state, reason and log tail) on failure, rollback or timeout.

        Example::

            Deployment("echo").start().wait_until_ready(timeout=60)
        """
        wait_ready(self, timeout, progress)
        return self


# ---------------------------------------------------------------- models


class ModelVersionInfo:
    """One immutable version of a model, as the registry stores it."""

    def __init__(self, version: cpb.ModelVersion):
        self.proto = version
        self.id = version.id
        self.number = version.number
        self.model_id = version.model.model_id
        self.deduplicated = version.deduplicated

    def to_dict(self) -> dict:
        v = self.proto
        return {"id": v.id, "model": f"{v.model.user_id}/{v.model.app_id}/models/{v.model.model_id}",
                "number": v.number, "sha256": v.sha256[:12], "size": v.size, "created_at": v.created_at,
                "methods": ", ".join(m.name for m in v.description.methods)}

    def __repr__(self) -> str:
        return f"<ModelVersion {self.model_id} #{self.number} {self.id[:8]}>"


class ModelInfo:
    def __init__(self, model: cpb.Model):
        self.proto = model
        self.id = model.ref.model_id

    def to_dict(self) -> dict:
        m = self.proto
        return {"id": m.ref.model_id, "user_id": m.ref.user_id, "app_id": m.ref.app_id,
                "versions": m.version_count, "latest": m.latest.number if m.HasField("latest") else None,
                "created_at": m.created_at}

    def __repr__(self) -> str:
        return f"<Model {self.proto.ref.user_id}/{self.proto.ref.app_id}/models/{self.id}>"


def parse_model_url(url: str) -> tuple[str, str, str]:
    """``user/app/models/id`` or ``user/app/id`` -> (user, app, id)."""
    parts = url.strip("/").split("/")
    if len(parts) == 4 and parts[2] == "models":
        return parts[0], parts[1], parts[3]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"bad model address {url!r}: use user_id/app_id/models/model_id")


class Model(MethodMirror):
    """A registered model whose methods mirror the model's own.

    Each ``@ModelClass.method`` becomes a method with the same name, signature
    and docstring (read from the registry, so no replica needs to run), plus
    the routing keywords ``deployment_id=`` or ``compute_cluster_id=`` +
    ``nodepool_id=``. Without them, the model owner's default deployment serves.
    ``model_version`` picks the version whose signatures are used: an id, or a
    number (``model_version=2``); the latest by default.

    Example::

        model = Model("local/default/models/echo")
        model.predict("hi")
        for token in model.generate("a b c", deployment_id="echo"):
            print(token)
    """

    def __init__(self, url: str | None = None, *, model_id: str | None = None, user_id: str | None = None,
                 app_id: str | None = None, model_version: dict | str | int | None = None,
                 client: Client | None = None):
        if url is not None:
            user_id, app_id, model_id = parse_model_url(url)
        if not model_id:
            raise ValueError("give the model: Model('user/app/models/id') or Model(model_id=...)")
        self._client = client
        self.id = model_id
        self.user_id = user_id
        self.app_id = app_id or "default"
        # A version by id ({"id": ...} or the id itself) or by number (an int); default the latest.
        version = model_version.get("id") if isinstance(model_version, dict) else model_version
        self._version_number = version if isinstance(version, int) else 0
        self._version_id = "" if isinstance(version, int) else version or ""
        self._transports: dict[tuple, _RoutedTransport] = {}
        self._lock = threading.Lock()
        self._load()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = default_client()
        return self._client

    def _model_ref(self) -> cpb.ModelRef:
        return cpb.ModelRef(user_id=self.user_id or self.client.user_id, app_id=self.app_id, model_id=self.id)

    def _load(self) -> None:
        version = self.client.call("GetVersion", cpb.VersionRef(
            model=self._model_ref(), version_id=self._version_id, number=self._version_number))
        self.version = ModelVersionInfo(version)
        self._mirror({m.name: method_from_proto(m) for m in version.description.methods},
                     self._transport, ROUTING)

    def __repr__(self) -> str:
        return f"<Model {self.user_id or self.client.user_id}/{self.app_id}/models/{self.id}: {', '.join(self.specs)}>"

    def _transport(self, deployment_id: str | None = None, compute_cluster_id: str | None = None,
                   nodepool_id: str | None = None) -> _RoutedTransport:
        """The transport of a call given these routing keywords (one per route, kept)."""
        if deployment_id and (compute_cluster_id or nodepool_id):
            raise ValueError("give deployment_id, or compute_cluster_id with nodepool_id, not both")
        if bool(compute_cluster_id) != bool(nodepool_id):
            raise ValueError("compute_cluster_id and nodepool_id go together; give both")
        route = (deployment_id or "", compute_cluster_id or "", nodepool_id or "")
        transport = self._transports.get(route)  # no lock once it exists: a call's hot path
        if transport is None:
            with self._lock:
                transport = self._transports.get(route)
                if transport is None:
                    transport = self._transports[route] = _RoutedTransport(self, route)
        return transport

    # ------------------------------------------------------------ registry

    def list_versions(self) -> Listing:
        resp = self.client.call("ListVersions", cpb.GetModelRequest(model=self._model_ref()))
        return Listing(ModelVersionInfo(v) for v in resp.versions)

    def export(self, path: str | Path, version_id: str | None = None) -> Path:
        """Write a version (default: this one) back to a model folder at ``path``, or, when
        ``path`` ends in ``.zip``, to that ZIP: the folder's files plus a manifest with the
        version's signatures, config and the files' checksums. ``upload_model`` of the ZIP (in
        this home or another) imports it as a version with the same content hash.

        Example::

            Model(model_id="echo").export("echo.zip")
            Client().upload_model("echo.zip").proto.sha256    # the exported version's
        """
        from ._upload import unpack_archive

        version = self.version if version_id in (None, self.version.id) else ModelVersionInfo(
            self.client.call("GetVersion", cpb.VersionRef(model=self._model_ref(), version_id=version_id)))
        ref = cpb.VersionRef(model=self._model_ref(), version_id=version.id)
        data = self.client._control(lambda stub, metadata: b"".join(
            c.data for c in stub.ExportVersion(ref, timeout=600, metadata=metadata)))
        if str(path).lower().endswith(".zip"):
            from ..formats._zip import write_export

            v = version.proto
            return write_export(data, Path(path), {
                "model": {"user_id": v.model.user_id, "app_id": v.model.app_id, "model_id": v.model.model_id},
                "version": {"id": v.id, "number": v.number, "sha256": v.sha256, "created_at": v.created_at},
                "config": json.loads(v.config_json or "{}"),
                "signatures": {m.name: method_from_proto(m).signature_text for m in v.description.methods}})
        return unpack_archive(data, Path(path))

    def deploy(self, deployment_id: str | None = None, *, version_id: str | None = None,
               nodepool_id: str | None = "local", compute_cluster_id: str | None = "local",
               wait: bool = True, timeout: float = 600.0,
               progress: Callable[[Rollout], None] | None = None, hot: bool | None = None,
               **config: Any) -> "Deployment":
        """Deploy this uploaded model, as :meth:`Client.deploy` does (without the upload; ``hot`` too).

        ``version_id`` pins that version (default: the deployment follows the latest);
        ``deployment_id`` defaults to the model id without what is not a letter or digit.

        Example::

            Model("local/default/models/echo").deploy(autoscale_config={"min_replicas": 1})
        """
        client = self.client
        version = self.version if version_id in (None, self.version.id) else None
        return roll_out(client, (self.user_id or client.user_id, self.app_id, self.id), version,
                        deployment_id=deployment_id or deployment_id_for(self.id), nodepool_id=nodepool_id,
                        compute_cluster_id=compute_cluster_id, wait=wait, timeout=timeout,
                        progress=progress, config=config, version_id=version_id, hot=hot)

    def set_visibility(self, visibility: str) -> None:
        """``"public"``: every user may see, call and deploy it; ``"private"``: only its owner."""
        self.client.call("SetVisibility", cpb.VisibilityRequest(model=self._model_ref(), visibility=visibility))

    def delete(self, version_id: str | None = None, force: bool = False) -> None:
        """Delete the model (or one version); refused while a deployment uses it unless ``force``."""
        self.client.call("DeleteModel", cpb.DeleteModelRequest(model=self._model_ref(),
                                                               version_id=version_id or "", force=force))


#: Seconds a call waits for a deployment to start a replica (woken from zero, or a platform model).
START_WAIT = 120.0
#: Seconds one ResolveRoute may take (the daemon answers at once, also while a replica starts).
ROUTE_TIMEOUT = 30.0
#: Seconds a call that reached no replica waits for one (a crashed replica is restarted).
REPLICA_WAIT = 60.0
#: Seconds between tries to resolve a route again while no daemon answers (the cached one serves).
DAEMON_RETRY = 1.0
#: Seconds before its token lapses that a cached route stops serving: a call must reach its runner
#: by then (a runner checks the token when a call starts). Route tokens live seconds (``_tokens``),
#: renewed at half their life, so a daemon may be away a few seconds without a call failing.
TOKEN_MARGIN = 1.0


class _RoutedTransport:
    """Calls a model through the route the control plane resolves, cached until near expiry.

    Calls take turns over the route's replicas. A call that got no answer because its runner
    could not be reached (UNAVAILABLE before any message came back) goes on to the route's
    other replicas, then to those of the route resolved again, waiting up to ``REPLICA_WAIT``
    seconds while a crashed replica is restarted; this for every call shape. A call whose
    runner refused its route token as expired (a clock apart from the daemon's) is made once
    more with a new one. A call that failed otherwise may have reached the model, and is not
    retried. Resolving a route to a deployment that scaled to zero waits while a replica starts.

    Route tokens are short-lived: the route is resolved again at half its token's life, so a
    revoked personal access token stops calls within that time (its renewal is refused:
    UNAUTHENTICATED, "token revoked").
    """

    def __init__(self, model: Model, route: tuple):
        self.model = model
        self.route = route
        self._transports: list[Any] = []  # GrpcTransport or IpcTransport, one per replica
        self._channels: dict[str, grpc.Channel] = {}  # this route's own connection to each replica
        self._turn = itertools.count()
        self._renew_at = 0.0
        self._expires_at = 0.0  # when the cached route's token lapses
        self._deployment_id = ""
        self._owner = ""  # the deployment's user
        self._seen: tuple[int, int] = (0, 0)  # the RouteWatch version the cached route was resolved at
        self._lock = threading.Lock()  # held briefly: the cached route's fields change together
        self._resolving = threading.Lock()  # held by the one caller resolving the route again

    def _current(self, refresh: bool = False) -> GrpcTransport:
        """The transport of the next call (in turn over the route's replicas), the route resolved
        first when it is stale, or always with ``refresh``."""
        if not (refresh or self._stale()):
            # No lock: the cached route's fields are replaced, never changed in place, and a call
            # that reads them as one resolve replaces them still gets a replica of a valid route.
            transports = self._transports
            return transports[next(self._turn) % len(transports)]
        with self._lock:
            # A route whose token is still good serves while one caller resolves it again: calls
            # must not wait on the daemon (it may be away, or restarting) while their route is valid.
            serving = not refresh and self._valid()
        if not self._resolving.acquire(blocking=not serving):
            return self._pick()
        try:
            if refresh or self._stale():
                self._renew(refresh)
        finally:
            self._resolving.release()
        return self._pick()

    def _pick(self) -> GrpcTransport:
        transports = self._transports
        return transports[next(self._turn) % len(transports)]

    def _stale(self) -> bool:
        """Whether the cached route must be resolved again: none yet, due for renewal, or its
        replicas changed (pushed)."""
        return (not self._transports or time.time() > self._renew_at
                or self.model.client._routes.version(self._deployment_id) != self._seen)

    def _valid(self) -> bool:
        """Whether the cached route's token is good for a call made now."""
        return bool(self._transports) and time.time() < self._expires_at - TOKEN_MARGIN

    def _renew(self, refresh: bool) -> None:
        """Resolve the route again and cache it (one caller at a time: ``_resolving`` is held)."""
        client = self.model.client
        routes = client._routes
        routes.ensure()
        seen = routes.version(self._deployment_id)  # read before resolving: a change meanwhile counts
        try:
            route = self._resolve()
        except ControlPlaneError as e:
            # No daemon answers (and none was found again): keep a route whose token is still
            # good, and try again soon.
            if e.code != "UNAVAILABLE" or refresh or not self._valid():
                raise
            self._renew_at = time.time() + DAEMON_RETRY
            return
        if route.deployment_id != self._deployment_id:  # the first resolve
            seen = routes.version(route.deployment_id)
        metadata = ((_wire.ROUTE_TOKEN_KEY, route.token),)
        addresses = list(route.addresses) or [route.address]
        channels = {address: self._channels.get(address) or client.route_channel(address) for address in addresses}
        transports = [GrpcTransport(runner_pb2_grpc.RunnerStub(channels[address]), client.timeout, metadata,
                                    client.combiner(address))
                      for address in addresses]
        ipc = list(route.ipc_addresses)
        if len(ipc) == len(addresses) and any(ipc) and _same_host_plane(client):
            from ._ipc import IpcTransport

            transports = [IpcTransport(endpoint, route.token, client.timeout, grpc) if endpoint else grpc
                          for endpoint, grpc in zip(ipc, transports)]
        # Renew at half the token's life: the other half lets the route serve on while the daemon
        # is away (restarting); sooner where the daemon says replicas may come and go
        # (autoscaling) and no pushed route changes tell us when.
        renew_at = time.time() + 0.5 * (route.expires_at - time.time())
        if route.refresh_at and not (routes.live and route.user_id == client.user_id):
            renew_at = min(renew_at, route.refresh_at)
        with self._lock:
            self._deployment_id, self._owner, self._seen = route.deployment_id, route.user_id, seen
            self._transports, self._expires_at, self._renew_at = transports, route.expires_at, renew_at
            self._channels = channels

    def _resolve(self) -> cpb.Route:
        """The route; while the deployment starts a replica (woken from zero), resolve again when
        its route changes (pushed, for one's own deployments; else every ``retry_after``)."""
        deployment_id, cluster, nodepool = self.route
        client = self.model.client
        request = cpb.RouteRequest(model=self.model._model_ref(), deployment_id=deployment_id,
                                   compute_cluster_id=cluster, nodepool_id=nodepool)
        route = client.call("ResolveRoute", request, timeout=ROUTE_TIMEOUT)
        if not route.retry_after:
            return route
        deadline = time.monotonic() + START_WAIT
        waits = (changes(client, route.deployment_id, route.user_id, START_WAIT, ["route", "deployment"],
                         poll=route.retry_after)
                 if route.user_id == client.user_id else ticks(START_WAIT, route.retry_after))
        with contextlib.closing(waits):
            for _ in waits:
                route = client.call("ResolveRoute", request, timeout=ROUTE_TIMEOUT)
                if not route.retry_after:
                    return route
                if time.monotonic() > deadline:
                    break
        raise ControlPlaneError(f"deployment {route.deployment_id}: {route.reason} (no replica came up "
                                f"within {START_WAIT:g} s)", "FAILED_PRECONDITION")

    def unary(self, request: pb.PredictRequest, raw: dict[str, bytes] | None = None) -> pb.Value:
        transport = None
        try:
            transport = self._current()
            return transport.unary(request, raw)
        except (RunnerError, ControlPlaneError) as e:
            if not self._retryable(e):
                raise
            failure = e
        for transport in self._fallbacks(transport, failure):
            try:
                return transport.unary(request, raw)
            except RunnerError as e:
                if e.code != "UNAVAILABLE":
                    raise

    def server_stream(self, request: pb.PredictRequest) -> Iterator[pb.Value]:
        started = False
        transport = None
        try:
            transport = self._current()
            for value in transport.server_stream(request):
                started = True
                yield value
            return
        except (RunnerError, ControlPlaneError) as e:
            if started:
                raise _cut_off(e) from None
            if not self._retryable(e):
                raise
            failure = e
        for transport in self._fallbacks(transport, failure):
            try:
                for value in transport.server_stream(request):
                    started = True
                    yield value
                return
            except RunnerError as e:
                if started:
                    raise _cut_off(e) from None
                if e.code != "UNAVAILABLE":
                    raise

    def bidi(self, request: pb.PredictRequest, items: Iterator[pb.Value]) -> Iterator[pb.Value]:
        replay = _Replay(items)
        started = False
        transport = None
        try:
            transport = self._current()
            for value in transport.bidi(request, replay):
                started = True
                replay.stop_recording()
                yield value
            return
        except (RunnerError, ControlPlaneError) as e:
            if started:
                raise _cut_off(e) from None
            if not self._retryable(e):
                raise
            failure = e
        for transport in self._fallbacks(transport, failure):
            # Nothing came back: send again what the attempts so far took from the caller.
            replay = _Replay(replay.rest(), replay.sent)
            try:
                for value in transport.bidi(request, replay):
                    started = True
                    replay.stop_recording()
                    yield value
                return
            except RunnerError as e:
                if started:
                    raise _cut_off(e) from None
                if e.code != "UNAVAILABLE":
                    raise

    def _retryable(self, error: Exception) -> bool:
        """Whether a call that got ``error`` before any answer goes on to another replica or waits:
        the runner could not be reached, or the route found none while one is (re)starting."""
        if isinstance(error, RunnerError):
            return error.code == "UNAVAILABLE" or _token_expired(error)
        return self._replica_coming(error)

    def _replica_coming(self, error: ControlPlaneError) -> bool:
        """Whether a failed resolve of a route that served before is worth waiting out: the daemon
        is away (it may be restarting), or no replica is READY while the deployment is meant to
        run (the scheduler restarts a crashed one)."""
        if not self._deployment_id:
            return False
        if error.code == "UNAVAILABLE":
            return True
        if error.code != "FAILED_PRECONDITION":
            return False
        try:
            state = Deployment(self._deployment_id, self._owner, client=self.model.client).state
        except ControlPlaneError:
            return False
        return state not in ("STOPPING", "STOPPED", "FAILED")

    def _fallbacks(self, failed: GrpcTransport | None, error: Exception) -> Iterator[GrpcTransport]:
        """Where to retry a call that reached no replica: the route's other replicas, then the
        replicas of the route resolved again, until one answers or ``REPLICA_WAIT`` seconds
        pass (a crashed replica is being restarted); then RunnerError UNAVAILABLE. After a
        token refused as expired, only the route resolved again (its token is new)."""
        self._renew_at = 0.0  # the next call resolves again, and learns which replicas are gone
        if not _token_expired(error):
            with self._lock:
                others = [t for t in self._transports if t is not failed]
            yield from others
        deadline = time.monotonic() + REPLICA_WAIT
        pause = 0.02
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
            try:
                self._current(refresh=True)
            except ControlPlaneError as e:
                if not self._replica_coming(e):
                    raise
                continue
            with self._lock:
                transports = list(self._transports)
            yield from transports
        raise RunnerError(f"deployment {self._deployment_id or '/'.join(filter(None, self.route))}: "
                          f"no replica answered within {REPLICA_WAIT:g} s", "UNAVAILABLE")


def _same_host_plane(client: Client) -> bool:
    """Whether calls may take the replicas' ipc sockets: the daemon, which runs the local replicas,
    is on this host (its address is loopback), and ``JUPYTER_DEPLOY_DATA_PLANE`` was not ``grpc``
    when the client first resolved a route (decided once per client)."""
    decided = client.__dict__.get("_same_host_plane")
    if decided is None:
        from .._address import is_loopback, split_address

        try:
            decided = (os.environ.get(_wire.DATA_PLANE_ENV, "").strip().lower() != "grpc"
                       and is_loopback(split_address(client.address)[0]))
        except DeployError:
            decided = False
        client.__dict__["_same_host_plane"] = decided
    return decided


def _token_expired(error: Exception) -> bool:
    """Whether a runner refused a call's route token as expired (before the call reached the model)."""
    return (isinstance(error, RunnerError) and error.code == "UNAUTHENTICATED"
            and "route token has expired" in str(error))


class _Replay:
    """An input iterator that remembers what it handed out (``sent``) until told to stop, so that
    a retry can send it again."""

    def __init__(self, items: Iterator[pb.Value], first: list[pb.Value] | None = None):
        self._items = iter(items)
        self._first = list(first or [])
        self._recording = True
        self.sent: list[pb.Value] = []

    def __iter__(self) -> "_Replay":
        return self

    def __next__(self) -> pb.Value:
        item = self._first.pop(0) if self._first else next(self._items)
        if self._recording:
            self.sent.append(item)
        return item

    def stop_recording(self) -> None:
        self._recording = False

    def rest(self) -> Iterator[pb.Value]:
        """What is left to send: the replayed items not yet taken, then the caller's."""
        return itertools.chain(list(self._first), self._items)


def _cut_off(error: Exception) -> Exception:
    """What a stream that had begun to answer raises when it breaks off: where its replica went
    away, said so. It is not sent again (the model may have acted on it), so the caller decides."""
    if isinstance(error, RunnerError) and error.code == "UNAVAILABLE":
        return RunnerError(f"UNAVAILABLE: the replica serving this stream went away after it began to "
                           f"answer ({error}); it is not sent again, as the model may have acted on it: "
                           "call again to retry", "UNAVAILABLE")
    return error
