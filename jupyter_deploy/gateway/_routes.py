"""Routes and runner calls for the gateway, cached the way the Python client caches them.

A caller's route to a model is resolved once through the daemon's ``ResolveRoute``,
authenticated with the caller's own personal access token (so every access rule is the
daemon's, exactly as for the gRPC client), and cached per (token, target). A cached
route serves until it is due for renewal (80% of its token's life, read from the route's
``expires_at``; sooner where the daemon sets ``refresh_at``; at most ``REFRESH`` seconds,
so rollouts are picked up), then one background resolve renews it while calls go on with
the old one as long as its token is valid. Calls take turns over the route's replicas; a
call that reached no runner (UNAVAILABLE) goes on to the others, then to the replicas of
the route resolved again, for up to ``REPLICA_WAIT`` seconds; a runner that refuses the
token (UNAUTHENTICATED: it lapsed, or the deployment's key changed) gets one call with a
token resolved again. A call that may have reached the model is never retried.

Runner channels are ``grpc.aio`` channels, one per runner address, shared by every route.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import grpc

from .. import _wire
from ..model.signature import MethodSpec, method_from_proto
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb
from ._combine import Combiner, Failed

#: Seconds a call waits for a deployment that is starting a replica (woken from zero).
START_WAIT = float(os.environ.get("JUPYTER_DEPLOY_GATEWAY_START_WAIT", 30.0))
#: Seconds a call that reached no replica waits for one (a crashed replica is restarted).
REPLICA_WAIT = 30.0
#: Seconds at most between two resolves of a cached route (new replicas, rollouts).
REFRESH = 5.0
#: Seconds one ResolveRoute may take.
ROUTE_TIMEOUT = 30.0
#: A refused token is not asked about again for this long (a flood of bad tokens stays here).
NEGATIVE_TTL = 1.0
#: Cached routes, at most (least recently used go first).
MAX_ROUTES = 10_000
#: Runner channels kept open, at most.
MAX_CHANNELS = 512

_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
_RUNNER = "/jupyter_deploy.v1.Runner/"
_CONTROL = "/jupyter_deploy.v1.ControlPlane/"

#: gRPC status -> HTTP status.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409, "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class GatewayError(Exception):
    """A failed request: its HTTP status, a code (the gRPC status name, or our own), a message."""

    def __init__(self, status: int, code: str, message: str, *, parameter: str | None = None,
                 retry_after: float | None = None, type: str = ""):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.parameter, self.retry_after, self.type = parameter, retry_after, type

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            error["parameter"] = self.parameter
        if self.type:
            error["type"] = self.type
        return {"error": error}


def _parameter(message: str) -> str | None:
    """The parameter an INVALID_ARGUMENT message names (``... parameter 'x[2]': ...``)."""
    start = message.find("parameter '")
    if start < 0:
        return None
    name = message[start + 11:].split("'", 1)[0]
    return name.split("[", 1)[0].split(".", 1)[0] or None


def from_status(code: str, message: str, type: str = "") -> GatewayError:
    """A runner's or the daemon's failure as the gateway's error."""
    if code == _wire.UNKNOWN or type == _wire.RETURN_TYPE_ERROR:  # the model (or its transformer) raised
        return GatewayError(500, "MODEL_ERROR", f"{type}: {message}" if type else message, type=type)
    status = HTTP_STATUS.get(code, 500)
    return GatewayError(status, code, message, retry_after=1.0 if status in (429, 503) else None,
                        parameter=_parameter(message) if code == "INVALID_ARGUMENT" else None, type=type)


def from_rpc(e: grpc.aio.AioRpcError) -> GatewayError:
    meta = {k: v for k, v in (e.trailing_metadata() or ())}
    type_ = meta.get(_wire.ERROR_TYPE_KEY, "")
    details = e.details() or e.code().name
    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return GatewayError(413, "PAYLOAD_TOO_LARGE", f"the request is over the runner's size limit ({details})")
    return from_status(e.code().name, details, type_ if isinstance(type_, str) else "")


@dataclass(frozen=True)
class Target:
    """What a call names: a deployment of the caller's, or a model (and optionally where)."""

    deployment_id: str = ""
    model: tuple[str, str, str] | None = None  # (user, app, model)
    compute_cluster_id: str = ""
    nodepool_id: str = ""

    def request(self) -> cpb.RouteRequest:
        ref = cpb.ModelRef(user_id=self.model[0], app_id=self.model[1], model_id=self.model[2]) \
            if self.model else cpb.ModelRef()
        return cpb.RouteRequest(model=ref, deployment_id=self.deployment_id,
                                compute_cluster_id=self.compute_cluster_id, nodepool_id=self.nodepool_id)

    def __str__(self) -> str:
        if self.model:
            return "/".join((self.model[0], self.model[1], "models", self.model[2]))
        return f"deployment {self.deployment_id}"


@dataclass
class Route:
    """A resolved route: where the deployment's replicas listen, the token, the methods."""

    deployment_id: str
    user_id: str
    version_id: str
    addresses: list[str]
    metadata: grpc.aio.Metadata  # the route token, built once: a tuple is converted on every call
    expires_at: float
    renew_at: float
    specs: dict[str, MethodSpec]
    description: pb.ModelDescription
    token: str = ""  # the route token again, for combined calls (each carries its own)
    _turn: Any = field(default_factory=itertools.count)

    def pick(self) -> str:
        return self.addresses[next(self._turn) % len(self.addresses)]


class _Entry:
    __slots__ = ("route", "pending", "renewing")

    def __init__(self) -> None:
        self.route: Route | None = None
        self.pending: asyncio.Future | None = None
        self.renewing: asyncio.Task | None = None


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel, combine: bool):
        self.channel = channel
        self.predict = channel.unary_unary(_RUNNER + "Predict", request_serializer=pb.PredictRequest.SerializeToString,
                                           response_deserializer=pb.PredictResponse.FromString)
        # Concurrent unary calls to this runner go together (``_combine``), unless turned off.
        self.combiner = Combiner(self.predict, channel.unary_unary(
            _RUNNER + "PredictMany", request_serializer=pb.PredictBatch.SerializeToString,
            response_deserializer=pb.PredictBatchResponse.FromString)) if combine else None
        self.generate = channel.unary_stream(_RUNNER + "Generate",
                                             request_serializer=pb.PredictRequest.SerializeToString,
                                             response_deserializer=pb.StreamResponse.FromString)
        self.stream = channel.stream_stream(_RUNNER + "Stream", request_serializer=pb.StreamRequest.SerializeToString,
                                            response_deserializer=pb.StreamResponse.FromString)


def _daemon_channel(address: str, tls: bool, ca: str | None) -> grpc.aio.Channel:
    if not tls:
        return grpc.aio.insecure_channel(address, options=_OPTIONS)
    path = os.environ.get("JUPYTER_DEPLOY_TLS_CA") or ca
    roots = Path(path).read_bytes() if path else None
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots), options=_OPTIONS)


class Routes:
    """The route cache and the runner channels of one gateway process (one event loop)."""

    def __init__(self, daemon_address: str, *, daemon_tls: bool = False, daemon_ca: str | None = None):
        self._daemon = _daemon_channel(daemon_address, daemon_tls, daemon_ca)
        self._control: dict[str, Any] = {}
        self._entries: OrderedDict[tuple[str, Target], _Entry] = OrderedDict()
        self._refused: dict[str, float] = {}  # token -> until when it is refused without asking
        self._specs: dict[str, dict[str, MethodSpec]] = {}  # version id -> its methods
        self._stubs: OrderedDict[str, _Stubs] = OrderedDict()
        self._combine = _wire.combining(os.environ)

    async def close(self) -> None:
        for stubs in self._stubs.values():
            await stubs.channel.close()
        await self._daemon.close()

    # ------------------------------------------------------------ the daemon

    async def control(self, pat: str, method: str, request: Any, response_type: Any,
                      timeout: float = ROUTE_TIMEOUT) -> Any:
        """One control-plane RPC as the holder of ``pat``; GatewayError on failure."""
        call = self._control.get(method)
        if call is None:
            call = self._control[method] = self._daemon.unary_unary(
                _CONTROL + method, request_serializer=type(request).SerializeToString,
                response_deserializer=response_type.FromString)
        until = self._refused.get(pat)
        if until is not None:
            if time.monotonic() < until:
                raise GatewayError(401, "UNAUTHENTICATED", "the token is not valid")
            del self._refused[pat]
        try:
            return await call(request, timeout=timeout,
                              metadata=((_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + pat),))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                if len(self._refused) > MAX_ROUTES:
                    self._refused.clear()
                self._refused[pat] = time.monotonic() + NEGATIVE_TTL
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise GatewayError(503, "UNAVAILABLE", "the control plane does not answer; retry shortly",
                                   retry_after=1.0) from None
            raise from_rpc(e) from None

    async def daemon_ready(self) -> bool:
        """Whether the daemon answers at all (any answer, even a refusal, counts)."""
        try:
            await self.control("", "GetInfo", cpb.InfoRequest(), cpb.Info, timeout=2.0)
        except GatewayError as e:
            return e.status != 503
        return True

    # ------------------------------------------------------------ routes

    async def route(self, pat: str, target: Target, refresh: bool = False) -> Route:
        """The cached route of ``target`` for the holder of ``pat`` (resolved when due)."""
        key = (pat, target)
        entry = self._entries.get(key)
        if entry is not None and not refresh:
            route = entry.route
            if route is not None:
                now = time.time()
                if now < route.renew_at:
                    return route
                if now < route.expires_at - 1.0:  # good for a while yet: renew in the background
                    if entry.renewing is None:
                        entry.renewing = asyncio.ensure_future(self._renew(key, entry))
                    return route
        if entry is None:
            entry = self._entries[key] = _Entry()
            if len(self._entries) > MAX_ROUTES:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        pending = entry.pending
        if pending is None:
            pending = entry.pending = asyncio.ensure_future(self._resolve(pat, target))

            def settled(future: asyncio.Future, entry: _Entry = entry) -> None:
                # Here, not in the waiters: a waiter may be gone (its client disconnected).
                if entry.pending is future:
                    entry.pending = None
                if not future.cancelled() and future.exception() is None:
                    entry.route = future.result()

            pending.add_done_callback(settled)
        return await asyncio.shield(pending)

    async def _renew(self, key: tuple[str, Target], entry: _Entry) -> None:
        try:
            entry.route = await self._resolve(*key, wait=False)
        except GatewayError as e:
            if e.status in (401, 403, 404, 409):  # revoked, gone, stopped: the next call learns why
                entry.route = None
        except Exception:  # noqa: BLE001 (a background renewal never takes the loop down)
            pass
        finally:
            entry.renewing = None

    async def _resolve(self, pat: str, target: Target, wait: bool = True) -> Route:
        request = target.request()
        deadline = time.monotonic() + START_WAIT
        while True:
            route = await self.control(pat, "ResolveRoute", request, cpb.Route)
            if not route.retry_after:
                return self._cached(route)
            # The deployment is starting a replica (woken from zero): ask again shortly. Every
            # caller of this target waits on this one resolve.
            if not wait or time.monotonic() > deadline:
                raise GatewayError(503, "UNAVAILABLE", f"deployment {route.deployment_id} is starting: "
                                   f"{route.reason}; retry shortly", retry_after=1.0)
            await asyncio.sleep(max(route.retry_after, 0.1))

    def _cached(self, route: cpb.Route) -> Route:
        specs = self._specs.get(route.version_id)
        if specs is None:
            specs = {m.name: method_from_proto(m) for m in route.description.methods}
            if len(self._specs) > 1024:
                self._specs.clear()
            self._specs[route.version_id] = specs
        now = time.time()
        life = max(route.expires_at - now, 0.0)
        renew_at = min(now + 0.8 * life, now + REFRESH)
        if route.refresh_at:
            renew_at = min(renew_at, route.refresh_at)
        return Route(route.deployment_id, route.user_id, route.version_id,
                     list(route.addresses) or [route.address], grpc.aio.Metadata((_wire.ROUTE_TOKEN_KEY, route.token)),
                     route.expires_at, renew_at, specs, route.description, route.token)

    # ------------------------------------------------------------ runners

    def stubs(self, address: str) -> _Stubs:
        stubs = self._stubs.get(address)
        if stubs is None:
            stubs = self._stubs[address] = _Stubs(grpc.aio.insecure_channel(address, options=_OPTIONS), self._combine)
            if len(self._stubs) > MAX_CHANNELS:
                _, old = self._stubs.popitem(last=False)
                asyncio.ensure_future(old.channel.close(grace=30))
        return stubs

    async def _failover(self, pat: str, target: Target, route: Route, tried: set[str],
                        deadline: float) -> tuple[Route, str]:
        """The next replica for a call that reached none: the route's others, then those of the
        route resolved again, until ``deadline``; GatewayError 503 after."""
        pause = 0.02
        while True:
            left = [a for a in route.addresses if a not in tried]
            if left:
                return route, left[0]
            if time.monotonic() > deadline:
                raise GatewayError(503, "UNAVAILABLE", f"{target}: no replica answered within "
                                   f"{REPLICA_WAIT:g} s", retry_after=1.0)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            try:
                route = await self.route(pat, target, refresh=True)
            except GatewayError as e:
                if e.status not in (409, 503):  # stopped for good, deleted, refused: say so
                    raise
                continue
            tried.clear()

    async def unary(self, pat: str, target: Target, route: Route, request: pb.PredictRequest,
                    timeout: float | None = None) -> pb.Value:
        """``Predict`` on one of the route's replicas, with failover; GatewayError on failure."""
        address = route.pick()
        tried: set[str] = set()
        deadline = 0.0
        renewed = False
        while True:
            stubs = self.stubs(address)
            try:
                if stubs.combiner is not None:
                    return await stubs.combiner.call(request, route.metadata, route.token, timeout)
                return (await stubs.predict(request, metadata=route.metadata, timeout=timeout)).output
            except (Failed, grpc.aio.AioRpcError) as e:
                # A combined call's own error (Failed, as a Predict's status) or the RPC's: the
                # same retries either way.
                combined = isinstance(e, Failed)
                code = e.code if combined else e.code().name
                if code == "UNAUTHENTICATED" and not renewed:
                    renewed = True
                    route = await self.route(pat, target, refresh=True)
                    address = route.pick()
                    continue
                if code != "UNAVAILABLE":
                    raise (from_status(e.code, e.message, e.type) if combined else from_rpc(e)) from None
            tried.add(address)
            deadline = deadline or time.monotonic() + REPLICA_WAIT
            route, address = await self._failover(pat, target, route, tried, deadline)

    async def server_stream(self, pat: str, target: Target, route: Route,
                            request: pb.PredictRequest) -> AsyncIterator[pb.StreamResponse]:
        """``Generate``'s messages, with failover until the first one came; closing the iterator
        cancels the call (the model's generator stops)."""
        address = route.pick()
        tried: set[str] = set()
        deadline = 0.0
        renewed = False
        while True:
            call = self.stubs(address).generate(request, metadata=route.metadata)
            started = False
            try:
                async for message in call:
                    started = True
                    yield message
                return
            except grpc.aio.AioRpcError as e:
                code = e.code()
                if started:
                    raise from_rpc(e) from None
                if code == grpc.StatusCode.UNAUTHENTICATED and not renewed:
                    renewed = True
                    route = await self.route(pat, target, refresh=True)
                    address = route.pick()
                    continue
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc(e) from None
            finally:
                call.cancel()  # a no-op once it ended; stops the model when the caller went away
            tried.add(address)
            deadline = deadline or time.monotonic() + REPLICA_WAIT
            route, address = await self._failover(pat, target, route, tried, deadline)

    async def bidi(self, route: Route, start: pb.PredictRequest,
                   items: AsyncIterator[list[pb.Value]]) -> AsyncIterator[pb.StreamResponse]:
        """``Stream``: ``start``, then each list of items as one message; not retried (the items
        were taken from the caller)."""
        async def requests() -> AsyncIterator[pb.StreamRequest]:
            yield pb.StreamRequest(start=start)
            async for batch in items:
                yield pb.StreamRequest(items=batch)

        call = self.stubs(route.pick()).stream(requests(), metadata=route.metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as e:
            raise from_rpc(e) from None
        finally:
            call.cancel()
