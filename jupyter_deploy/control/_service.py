"""The ControlPlane gRPC service: authenticate, check the RPC's rule, call the plane, map errors.

Each RPC method is wrapped by ``_rpc`` (or ``_rpc_stream``), which authenticates the
caller and applies the RPC's rule from ``_access.RPC_RULES`` before the method runs;
the import fails if an RPC of the service is not wrapped.

Stream RPCs (uploads, exports, watches) each hold a server thread while they last:
they take a slot of their budget first (``_streams``: per user and in all), and
uploads and exports that stall are cancelled, so the threads kept for unary calls
(``_streams.UNARY_THREADS``) are always there.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
from google.protobuf.message import DecodeError, Message

from .. import _wire
from .._version import __version__
from ..proto import control_pb2 as cpb
from ..proto import control_pb2_grpc
from . import _auth
from ._access import (
    ADMIN,
    PLATFORM,
    RPC_RULES,
    check_rpc,
    own_resource,
    owned_model,
    readable_model,
)
from ._errors import ControlError, InvalidArgument, PermissionDenied
from ._events import KINDS, MAX_WATCHERS, WatchFilter, stream
from ._plane import ControlPlane
from ._streams import MAX_TRANSFERS, UNARY_THREADS, IdleWatch, Slots


def _json(text: str, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidArgument(f"{what} nests too deeply (hundreds of levels); a config is a few levels deep") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a mapping, got {type(value).__name__}")
    return value


class Undecodable:
    """What the server hands an RPC in place of a request that is not a valid message."""

    def __init__(self, message_type: type, error: Exception):
        self.message_type, self.error = message_type, error

    def refuse(self) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid {self.message_type.DESCRIPTOR.full_name} "
                               f"message ({self.error}); call the daemon with jupyter_deploy.Client")


def _lenient(message_type: type) -> Callable[[bytes], Any]:
    """A request deserializer that returns an Undecodable instead of raising.

    gRPC deserializes before the RPC runs and answers a failure with INTERNAL; handed an
    Undecodable, the RPC's wrapper answers INVALID_ARGUMENT, as for any other bad request.
    """
    def deserialize(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return Undecodable(message_type, e)
    return deserialize


def _decoded(request: Any) -> Any:
    """``request``, or for a request stream an iterator over it; raises InvalidArgument at an
    Undecodable."""
    if isinstance(request, Undecodable):
        raise request.refuse()
    if isinstance(request, Message):
        return request

    def checked() -> Iterator[Message]:
        for item in request:
            if isinstance(item, Undecodable):
                raise item.refuse()
            yield item
    return checked()


def _rpc(method: Callable) -> Callable:
    """Authenticate the caller, check the RPC's rule, pass the caller in, and turn ControlErrors
    into statuses."""
    @functools.wraps(method)
    def handler(self: "ControlService", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            request = _decoded(request)
            caller = self.authenticate(context)
            check_rpc(method.__name__, caller)
            return method(self, caller, request, context)
        except ControlError as e:
            context.abort(getattr(grpc.StatusCode, e.code), e.message)
    handler.guarded = True
    return handler


def _rpc_stream(method: Callable) -> Callable:
    """_rpc for response-streaming methods: errors raised while streaming are mapped too."""
    @functools.wraps(method)
    def handler(self: "ControlService", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            request = _decoded(request)
            caller = self.authenticate(context)
            check_rpc(method.__name__, caller)
            yield from method(self, caller, request, context)
        except ControlError as e:
            context.abort(getattr(grpc.StatusCode, e.code), e.message)
    handler.guarded = True
    return handler


class ControlService(control_pb2_grpc.ControlPlaneServicer):
    def __init__(self, plane: ControlPlane):
        self.plane = plane
        self.slots = Slots(plane.limits)                          # streams open, per user and in all
        self.idle = IdleWatch(plane.limits.upload_idle_seconds)   # cancels stalled uploads and exports

    def authenticate(self, context: grpc.ServicerContext) -> str:
        header = dict(context.invocation_metadata()).get(_wire.AUTHORIZATION_KEY, "")
        token = header[len(_wire.BEARER_PREFIX):] if header.startswith(_wire.BEARER_PREFIX) else ""
        return _auth.authenticate(self.plane.store, self.plane.secret, token)

    # ------------------------------------------------------------ daemon

    @_rpc
    def GetInfo(self, caller, request, context):
        return cpb.Info(version=__version__, pid=os.getpid(), home=str(self.plane.home), user_id=caller,
                        address=self.plane.address, gateway_url=self.plane.gateway_url,
                        gateway_grpc_address=self.plane.gateway_grpc_address)

    @_rpc
    def Shutdown(self, caller, request, context):
        self.plane.stop_runners_on_shutdown = request.stop_runners
        self.plane.shutdown_requested.set()
        return cpb.ShutdownResponse()

    @_rpc
    def GetLimits(self, caller, request, context):
        user = request.user_id or caller
        if user != caller and caller != ADMIN:
            raise PermissionDenied(f"only the admin ({ADMIN}) reads another user's limits; you are {caller}")
        mine = self.plane.limits.for_user(user)
        used = {**self.plane.used(user), **self.slots.open(user)}
        fields = type(mine).model_fields
        limits = [cpb.Limit(name=name, value=getattr(mine, name), used=used.get(name),
                            description=fields[name].description or "") for name in fields]
        limits.append(cpb.Limit(name="upload_idle_seconds", value=self.plane.limits.upload_idle_seconds,
                                description=type(self.plane.limits).model_fields["upload_idle_seconds"].description))
        return cpb.Limits(user_id=user, limits=limits)

    # ------------------------------------------------------------ registry

    @_rpc
    def UploadModel(self, caller, request_iterator, context):
        with self.slots.transfer(caller, "upload") as slot, self.idle.track(context, "upload") as stream:
            context.add_callback(slot.release)
            return self.plane.registry.upload(caller, stream.requests(request_iterator), limits=self.plane.limits)

    def _readable(self, caller: str, ref: cpb.ModelRef) -> cpb.ModelRef:
        ref = _owned(ref, caller)
        readable_model(self.plane.store, caller, (ref.user_id, ref.app_id, ref.model_id))
        return ref

    @_rpc
    def GetModel(self, caller, request, context):
        return self.plane.registry.get_model(self._readable(caller, request.model))

    @_rpc
    def ListModels(self, caller, request, context):
        models = self.plane.registry.list_models(request.user_id or caller, request.app_id or None)
        return cpb.ListModelsResponse(models=[m for m in models if m.ref.user_id in (caller, PLATFORM)
                                              or m.visibility == "public"])

    @_rpc
    def ListVersions(self, caller, request, context):
        return cpb.ListVersionsResponse(versions=self.plane.registry.list_versions(
            self._readable(caller, request.model)))

    @_rpc
    def GetVersion(self, caller, request, context):
        if request.model.model_id or not request.version_id:
            request.model.CopyFrom(self._readable(caller, request.model))
            return self.plane.registry.get_version(request)
        version = self.plane.registry.get_version(request)  # by id alone
        self._readable(caller, version.model)
        return version

    @_rpc_stream
    def ExportVersion(self, caller, request, context):
        request.model.CopyFrom(self._readable(caller, request.model))
        chunks = self.plane.registry.export(request)
        with self.slots.transfer(caller, "export") as slot, self.idle.track(context, "export") as stream:
            context.add_callback(slot.release)
            yield from stream.responses(chunks)

    @_rpc
    def SetVisibility(self, caller, request, context):
        ref = _owned(request.model, caller)
        owned_model(self.plane.store, caller, (ref.user_id, ref.app_id, ref.model_id))
        return self.plane.registry.set_visibility(ref, request.visibility)

    @_rpc
    def DeleteModel(self, caller, request, context):
        ref = _owned(request.model, caller)
        owned_model(self.plane.store, caller, (ref.user_id, ref.app_id, ref.model_id))
        registry, compute = self.plane.registry, self.plane.compute
        if request.force:
            # Forced: its deployments go first, through compute, so their replicas are stopped.
            ids = [request.version_id] if request.version_id else [v.id for v in registry.list_versions(ref)]
            compute.delete(caller, [cpb.ResourceRef(kind="deployment", id=d)
                                    for d in compute.versions_in_use(ids)])
        registry.delete(ref, request.version_id, request.force, in_use=compute.versions_in_use)
        return cpb.DeleteResponse()

    # ------------------------------------------------------------ compute

    @_rpc
    def Create(self, caller, request, context):
        return self.plane.compute.create(caller, request.ref, _json(request.config_json, "config"))

    @_rpc
    def Get(self, caller, request, context):
        own_resource(caller, request.user_id, f"{request.kind.replace('_', ' ')} {request.id!r}")
        return self.plane.compute.get(caller, request)

    @_rpc
    def List(self, caller, request, context):
        own_resource(caller, request.parent.user_id, f"{request.parent.kind.replace('_', ' ')}s")
        return cpb.ListResponse(resources=self.plane.compute.list(caller, request.parent))

    @_rpc
    def Update(self, caller, request, context):
        own_resource(caller, request.ref.user_id, f"deployment {request.ref.id!r}")
        return self.plane.compute.update(caller, request.ref, _json(request.config_json, "config"), hot=request.hot)

    @_rpc
    def Delete(self, caller, request, context):
        for ref in request.refs:
            own_resource(caller, ref.user_id, f"{ref.kind.replace('_', ' ')} {ref.id!r}")
        self.plane.compute.delete(caller, list(request.refs))
        return cpb.DeleteResponse()

    @_rpc
    def Act(self, caller, request, context):
        own_resource(caller, request.ref.user_id, f"deployment {request.ref.id!r}")
        return self.plane.compute.act(caller, request.ref, request.action)

    @_rpc
    def Logs(self, caller, request, context):
        own_resource(caller, request.ref.user_id, f"deployment {request.ref.id!r}")
        return cpb.LogsResponse(lines=self.plane.compute.logs(caller, request.ref, request.lines))

    @_rpc
    def CallLogs(self, caller, request, context):
        own_resource(caller, request.ref.user_id, f"deployment {request.ref.id!r}")
        return cpb.CallLogsResponse(records=self.plane.compute.call_logs(caller, request))

    @_rpc
    def Metrics(self, caller, request, context):
        own_resource(caller, request.user_id, f"deployment {request.id!r}")
        return cpb.MetricsResponse(metrics_json=json.dumps(self.plane.compute.metrics(caller, request)))

    # ------------------------------------------------------------ routing

    @_rpc
    def ResolveRoute(self, caller, request, context):
        return self.plane.router.resolve(caller, request)

    @_rpc_stream
    def Watch(self, caller, request, context):
        unknown = sorted(set(request.kinds) - set(KINDS))
        if unknown:
            raise InvalidArgument(f"cannot watch {', '.join(unknown)}: kinds are {', '.join(KINDS)}")
        owner = request.user_id or caller
        if owner == "*":
            if caller != ADMIN:
                raise PermissionDenied("only the admin watches every user's deployments")
            owner = None
        else:
            own_resource(caller, owner, "deployments")
        where = WatchFilter(owner, frozenset(request.kinds), frozenset(request.ids))
        with self.slots.watch(caller) as slot, self.plane.events.subscribe(where) as sub:
            context.add_callback(slot.release)
            context.add_callback(sub.wake)  # a cancelled stream gives its slot back at once
            yield from stream(sub, context.is_active)

    # ------------------------------------------------------------ users and tokens (a token is shown once)

    @_rpc
    def CreateUser(self, caller, request, context):
        user, token_id, token = _auth.create_user(self.plane.store, self.plane.secret, request.user_id)
        return cpb.UserWithToken(user=cpb.User(**user),
                                 token=cpb.NewToken(id=token_id, user_id=user["id"], token=token))

    @_rpc
    def ListUsers(self, caller, request, context):
        return cpb.ListUsersResponse(users=[cpb.User(**u) for u in _auth.list_users(self.plane.store)])

    @_rpc
    def CreateToken(self, caller, request, context):
        token_id, token = _auth.create_token(self.plane.store, self.plane.secret, caller)
        return cpb.NewToken(id=token_id, user_id=caller, token=token)

    @_rpc
    def ListTokens(self, caller, request, context):
        return cpb.ListTokensResponse(tokens=[_token_info(t) for t in _auth.list_tokens(self.plane.store, caller)])

    @_rpc
    def RevokeToken(self, caller, request, context):
        return _token_info(_auth.revoke_token(self.plane.store, caller, request.token_id))

    # ------------------------------------------------------------ secrets (values never leave but to runners)

    @_rpc
    def SetSecret(self, caller, request, context):
        updated_at = self.plane.secrets.set(caller, request.name, request.value)
        return cpb.Secret(name=request.name, updated_at=updated_at)

    @_rpc
    def ListSecrets(self, caller, request, context):
        return cpb.ListSecretsResponse(secrets=[cpb.Secret(name=name, updated_at=updated_at)
                                                for name, updated_at in self.plane.secrets.names(caller)])

    @_rpc
    def DeleteSecret(self, caller, request, context):
        self.plane.secrets.delete(caller, request.name)
        return cpb.DeleteResponse()


_SERVICE = cpb.DESCRIPTOR.services_by_name["ControlPlane"]
_UNGUARDED = sorted(rpc for rpc in RPC_RULES if not getattr(getattr(ControlService, rpc), "guarded", False))
if _UNGUARDED:  # it would skip authentication and its rule
    raise ImportError(f"ControlService RPCs not wrapped by _rpc/_rpc_stream: {', '.join(_UNGUARDED)}")


def _token_info(row: dict) -> cpb.TokenInfo:
    return cpb.TokenInfo(id=row["id"], user_id=row["user_id"], created_at=row["created_at"],
                         revoked_at=row["revoked_at"] or 0.0)


def _owned(ref: cpb.ModelRef, caller: str) -> cpb.ModelRef:
    return cpb.ModelRef(user_id=ref.user_id or caller, app_id=ref.app_id or "default", model_id=ref.model_id)


class _LenientRequests(grpc.ServerInterceptor):
    """Gives each ControlPlane method a ``_lenient`` request deserializer (see there)."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = self._handlers.get(details.method)
        if handler is None:
            handler = continuation(details)
            rpc = details.method.rpartition("/")[2]
            if handler is None or details.method != f"/{_SERVICE.full_name}/{rpc}":
                return handler
            request_type = getattr(cpb, _SERVICE.methods_by_name[rpc].input_type.name)
            handler = self._handlers[details.method] = handler._replace(
                request_deserializer=_lenient(request_type))
        return handler


def make_server(plane: ControlPlane, address: str,
                credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, int]:
    """A server for ``plane`` bound to ``address`` (not started); returns it and its port.

    With ``credentials`` (``grpc.ssl_server_credentials``) it serves TLS only.
    """
    server = grpc.server(
        # Streams are capped below their share (_streams), so unary calls always find a thread.
        futures.ThreadPoolExecutor(max_workers=UNARY_THREADS + MAX_TRANSFERS + MAX_WATCHERS,
                                   thread_name_prefix="control"),
        # Off, so a second daemon cannot bind the same port and split the clients.
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 64 << 20)],
        interceptors=[_LenientRequests()],
    )
    control_pb2_grpc.add_ControlPlaneServicer_to_server(ControlService(plane), server)
    port = (server.add_secure_port(address, credentials) if credentials is not None
            else server.add_insecure_port(address))
    if port == 0:
        raise OSError(f"cannot listen on {address} (is the port in use?)")
    return server, port
