"""The gateway's ASGI application: native REST, streaming, WebSocket; OIP and OpenAI mount here.

Written against ASGI directly rather than a framework: it is on every call's path, its
routes are few and fixed, and what a framework adds (request objects, middleware,
dependency injection) costs microseconds per call that the gateway's targets (W1 within
2x of a bare gRPC call) cannot spare. uvicorn's server runs it on uvloop, with the gateway's
own HTTP/1.1 protocol on httptools (``_http``).

Paths (see README "HTTP endpoints"):

    POST /v1/deployments/{deployment_id}/methods/{method}              a call (JSON or multipart)
    GET  /v1/deployments/{deployment_id}/methods[/{method}]             JSON Schema
    WS   /v1/deployments/{deployment_id}/methods/{method}/stream        bidirectional
    ...  /v1/users/{user_id}/apps/{app_id}/models/{model_id}/methods... the same, routed as the client
    POST /v1/chat/completions, /v1/completions; GET /v1/models           OpenAI-compatible (_openai)
    /v2/...                                                              Open Inference Protocol (_oip)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable

from .._version import __version__
from ..model.signature import SERVER_STREAM, UNARY, MethodSpec
from ..proto import runner_pb2 as pb
from . import _json
from ._routes import GatewayError, Route, Routes, Target, from_status

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

#: The largest request body accepted, in bytes (the runner's own limit): 413 above it.
DEFAULT_BODY_LIMIT = 64 << 20
#: Stream messages read ahead of a slow reader; they are sent together when it catches up.
READ_AHEAD = 64

_JSON = (b"content-type", b"application/json")
# One encoder for every response: json.dumps with these options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_str_json = json.encoder.encode_basestring  # what that encoder does with a str (non-ASCII kept)


def dumps(obj: Any) -> bytes:
    return _encode(obj).encode()


class Disconnected(Exception):
    """The client went away before the request was read."""


class Request:
    """What a handler needs of one HTTP request."""

    __slots__ = ("scope", "receive", "send", "path", "method", "headers", "_query")

    def __init__(self, scope: Scope, receive: Receive, send: Send):
        self.scope, self.receive, self.send = scope, receive, send
        self.path = scope["path"]
        self.method = scope.get("method", "GET")
        self.headers: dict[bytes, bytes] = dict(scope["headers"])  # later duplicates win
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            qs = self.scope.get("query_string", b"").decode("latin-1")
            self._query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()}
        return self._query

    def header(self, name: bytes) -> str:
        return self.headers.get(name, b"").decode("latin-1")


def bearer(request: Request) -> str:
    """The caller's personal access token: ``Authorization: Bearer <PAT>`` (or ``Key <PAT>``)."""
    header = request.headers.get(b"authorization")
    if header:
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        if scheme.lower() in ("bearer", "key") and token.strip():
            return token.strip()
    raise GatewayError(401, "UNAUTHENTICATED", "no token: send 'Authorization: Bearer <personal access "
                       "token>' (`jupyter-deploy token create` makes one)")


async def send_json(send: Send, status: int, obj: Any, headers: list | None = None) -> None:
    body = _encode(obj).encode()
    head = [_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        head += headers
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, e: GatewayError) -> None:
    headers = []
    if e.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(e.retry_after))).encode()))
    if e.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="jupyter_deploy"'))
    await send_json(send, e.status, e.body(), headers)


class App:
    """The ASGI app of one gateway process.

    Args:
        routes: the route cache and runner channels.
        body_limit: the largest request body, in bytes.
        fetch_urls: whether ``{"url": ...}`` arguments are fetched (http/https, size-capped).
    """

    def __init__(self, routes: Routes, *, body_limit: int = DEFAULT_BODY_LIMIT, fetch_urls: bool = True):
        from ..model.media import fetch_url

        self.routes = routes
        self.body_limit = body_limit
        self.fetch = fetch_url if fetch_urls else None
        self.started = time.time()
        self._targets: dict[str, Target] = {}
        from ._oip import OIP
        from ._openai import OpenAI

        self.oip = OIP(self)
        self.openai = OpenAI(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            request = Request(scope, receive, send)
            try:
                await self.http(request)
            except GatewayError as e:
                await send_error(send, e)
            except Disconnected:
                pass
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.routes.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ------------------------------------------------------------ routing

    async def http(self, r: Request) -> None:
        parts = r.path.strip("/").split("/")
        head = parts[0]
        if head == "v1" and len(parts) > 1:
            second = parts[1]
            if second == "deployments" and len(parts) >= 4 and parts[3] == "methods":
                return await self.methods(r, self._deployment(parts[2]), parts[4:])
            if second == "users" and len(parts) >= 8 and parts[3] == "apps" and parts[5] == "models" \
                    and parts[7] == "methods":
                return await self.methods(r, self._model_target(r, parts[2], parts[4], parts[6]), parts[8:])
            if second in ("chat", "completions", "models"):
                return await self.openai.http(r, parts[1:])
            if second == "gateway" and len(parts) == 2:
                return await send_json(r.send, 200, {"version": __version__, "pid": os.getpid(),
                                                     "uptime_s": round(time.time() - self.started, 1),
                                                     "routes_cached": len(self.routes._entries)})
        elif head == "v2":
            return await self.oip.http(r, parts[1:])
        raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")

    def _deployment(self, deployment_id: str) -> Target:
        """The Target of a deployment id, made once (a frozen dataclass costs microseconds to build)."""
        target = self._targets.get(deployment_id)
        if target is None:
            if len(self._targets) >= 4096:
                self._targets.clear()
            target = self._targets[deployment_id] = Target(deployment_id=deployment_id)
        return target

    def _model_target(self, r: Request, user: str, app: str, model: str) -> Target:
        q = r.query
        return Target(deployment_id=q.get("deployment_id", ""), model=(user, app, model),
                      compute_cluster_id=q.get("compute_cluster_id", ""), nodepool_id=q.get("nodepool_id", ""))

    async def methods(self, r: Request, target: Target, rest: list[str]) -> None:
        pat = bearer(r)
        if not rest or rest == [""]:
            if r.method != "GET":
                raise GatewayError(405, "METHOD_NOT_ALLOWED", "list the methods with GET")
            route = await self.routes.route(pat, target)
            return await send_json(r.send, 200, describe_route(route))
        if len(rest) != 1:
            raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")
        if r.method == "GET":
            route = await self.routes.route(pat, target)
            return await send_json(r.send, 200, _json.method_schema(method_spec(route, rest[0], target)))
        if r.method != "POST":
            raise GatewayError(405, "METHOD_NOT_ALLOWED", f"call a method with POST, not {r.method}")
        await self.call(r, pat, target, rest[0])

    # ------------------------------------------------------------ calls

    async def body(self, r: Request) -> bytes:
        """The request body, refused with 413 past the limit."""
        declared = r.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            raise self._too_large(int(declared))
        chunks = []
        size = 0
        while True:
            message = await r.receive()
            if message["type"] == "http.disconnect":
                raise Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                raise self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> GatewayError:
        return GatewayError(413, "PAYLOAD_TOO_LARGE", f"the request body ({size} bytes or more) is over the "
                            f"gateway's limit of {self.body_limit} bytes ({self.body_limit / 2**20:g} MiB; "
                            f"JUPYTER_DEPLOY_GATEWAY_BODY_LIMIT sets it)")

    async def arguments(self, r: Request, spec: MethodSpec | None = None) -> Any:
        """The request's arguments: a JSON object, or the fields of a multipart form."""
        data = await self.body(r)
        ctype = r.header(b"content-type")
        if ctype.startswith("multipart/form-data"):
            return _multipart(ctype, data, spec)
        if not data or data.isspace():  # (not strip(): it would copy a large body)
            return {}
        try:
            return json.loads(data)
        except ValueError as e:
            raise GatewayError(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {e}") from None

    async def encode(self, spec: MethodSpec, args: Any, request_id: str = "") -> pb.PredictRequest:
        if _json.needs_thread(spec):
            return await asyncio.to_thread(self._encode, spec, args, request_id)
        return self._encode(spec, args, request_id)

    def _encode(self, spec: MethodSpec, args: Any, request_id: str) -> pb.PredictRequest:
        try:
            request = _json.encode_arguments(spec, args, self.fetch)
        except _json.ArgumentError as e:
            raise GatewayError(400, "INVALID_ARGUMENT", e.message, parameter=e.parameter) from None
        if request_id:
            request.request_id = request_id[:128]
        return request

    async def call(self, r: Request, pat: str, target: Target, method: str) -> None:
        route = await self.routes.route(pat, target)
        spec = method_spec(route, method, target)
        args = await self.arguments(r, spec)
        request_id = r.header(b"x-request-id") if b"x-request-id" in r.headers else ""
        if spec.shape == UNARY:
            if _json.needs_thread(spec):
                request = await asyncio.to_thread(self._encode, spec, args, request_id)
            else:  # the common case stays on the loop: no coroutine, no thread
                request = self._encode(spec, args, request_id)
            value = await self.routes.unary(pat, target, route, request)
            if value.WhichOneof("kind") in _HEAVY:  # images are encoded as PNG off the loop
                output = await asyncio.to_thread(_json.to_json, value)
            else:
                output = _json.to_json(value)
            body = _encode({"output": output}).encode()
            await r.send({"type": "http.response.start", "status": 200,
                          "headers": [_JSON, (b"content-length", b"%d" % len(body))]})
            return await r.send({"type": "http.response.body", "body": body})
        if spec.shape == SERVER_STREAM:
            request = await self.encode(spec, args, request_id)
            messages = self.routes.server_stream(pat, target, route, request)
        else:  # bidirectional over plain HTTP: the stream's items as a JSON array in the body
            stream = spec.stream_param
            if not isinstance(args, dict) or not isinstance(args.get(stream.name), list):
                raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() is bidirectional: give "
                                   f"'{stream.name}' as a JSON array, or open a WebSocket at {r.path}/stream",
                                   parameter=stream.name)
            items = args.pop(stream.name)
            request = await self.encode(spec, args, request_id)
            encoded = _encode_items(spec, items, self.fetch)
            messages = self.routes.bidi(route, request, _once(encoded))
        ndjson = "application/x-ndjson" in r.header(b"accept")
        await stream_response(r, messages, ndjson)

    # ------------------------------------------------------------ websocket

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ._websocket import serve_websocket

        await serve_websocket(self, scope, receive, send)


def method_spec(route: Route, method: str, target: Target) -> MethodSpec:
    spec = route.specs.get(method)
    if spec is None:
        raise GatewayError(404, "NOT_FOUND", f"{target} has no method '{method}' "
                           f"(methods: {', '.join(route.specs) or 'none'})")
    return spec


def describe_route(route: Route) -> dict:
    d = route.description
    return {"deployment_id": route.deployment_id, "user_id": route.user_id, "version_id": route.version_id,
            "model_id": d.model_id, "class_name": d.class_name, "doc": d.doc,
            "methods": [_json.method_schema(spec) for spec in route.specs.values()]}


_HEAVY = frozenset({"image", "dataframe", "frame", "ndarray"})


def _encode_items(spec: MethodSpec, items: list, fetch: Any) -> list[pb.Value]:
    stream = spec.stream_param
    enc = _json.encoder(stream.type, fetch)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(enc(item))
        except _json.Mismatch as e:
            raise GatewayError(400, "INVALID_ARGUMENT", _json.JsonMismatch.describe(
                e, f"{spec.name}() parameter", f"{stream.name}[{i}]"), parameter=stream.name) from None
    return out


async def _once(items: list[pb.Value]) -> AsyncIterator[list[pb.Value]]:
    if items:
        yield items


def _multipart(ctype: str, data: bytes, spec: MethodSpec | None) -> dict:
    """A multipart/form-data body as arguments: file parts (and media parameters) as bytes, other
    fields as JSON, or as text where the parameter is a str."""
    kinds = {p.name: (p.type.args[0] if p.type.kind == "optional" else p.type).kind
             for p in (spec.params if spec else ())}
    args: dict[str, Any] = {}
    for name, filename, content_type, payload in _parts(ctype, data):
        kind = kinds.get(name)
        if filename is not None or kind in ("bytes", "image", "audio", "video", "ndarray"):
            if kind in ("audio", "video"):
                args[name] = {"base64": base64.b64encode(payload).decode(), "mime": content_type}
            else:
                args[name] = payload
        elif kind == "str":
            args[name] = payload.decode("utf-8", errors="replace")
        else:
            try:
                args[name] = json.loads(payload)
            except ValueError:
                raise GatewayError(400, "INVALID_ARGUMENT", f"form field '{name}' is not JSON "
                                   f"(a {kind or 'value'} is sent as JSON, e.g. 3 or [1, 2])",
                                   parameter=name) from None
    return args


def _parts(ctype: str, data: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """``(name, filename, content type, payload)`` of each part (RFC 7578). Written here, not with
    the email package, whose parser copies a large file part several times over."""
    params = dict(_header_params(ctype))
    boundary = params.get("boundary")
    if not boundary:
        raise GatewayError(400, "INVALID_ARGUMENT", "multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    out = []
    pos = data.find(delimiter)
    if pos < 0:
        raise GatewayError(400, "INVALID_ARGUMENT", "the multipart body has no part (is its boundary right?)")
    while True:
        pos += len(delimiter)
        if data.startswith(b"--", pos):
            return out
        head_end = data.find(b"\r\n\r\n", pos)
        end = data.find(b"\r\n" + delimiter, head_end)
        if head_end < 0 or end < 0:
            raise GatewayError(400, "INVALID_ARGUMENT", "the multipart body is cut short")
        headers = {}
        for line in data[pos:head_end].decode("utf-8", errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = dict(_header_params(headers.get("content-disposition", "")))
        if "name" in disposition:
            out.append((disposition["name"], disposition.get("filename"),
                        headers.get("content-type", "application/octet-stream"), data[head_end + 4:end]))
        pos = end + 2


def _header_params(value: str) -> list[tuple[str, str]]:
    """The ``key=value`` parameters of a header such as Content-Disposition (quotes removed)."""
    out = []
    for item in value.split(";")[1:]:
        key, _, val = item.strip().partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        out.append((key.strip().lower(), val))
    return out


# ---------------------------------------------------------------- streamed responses


async def stream_response(r: Request, messages: AsyncIterator[pb.StreamResponse], ndjson: bool = False,
                          frame: Callable[[Any], tuple[bytes, bool]] | None = None) -> None:
    """Server-Sent Events (or NDJSON) of a stream's items: read ahead of a slow reader, and what
    piled up goes out in one write; the model's stream is cancelled when the client goes away.
    ``frame(message) -> (bytes, last)`` writes one runner message (None: the stream broke off;
    a GatewayError: it failed), default the native events.

    A failure before the first item is an ordinary error response (status and JSON body)."""
    send = r.send
    iterator = messages.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    if first is not None and not first.items and first.HasField("error"):
        err = first.error
        await iterator.aclose()
        raise from_status(err.code, err.message, err.type)
    frame = frame or (_ndjson_frame if ndjson else _sse_frame)
    # The first frame goes out at once, in the same write as the headers (the server holds them
    # for the first body): the time to the first item is the runner's and the network's only.
    chunk, done = frame(first)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/x-ndjson" if ndjson else b"text/event-stream"),
        (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
    await send({"type": "http.response.body", "body": chunk, "more_body": not done})
    if done:
        await iterator.aclose()
        return
    queue: asyncio.Queue = asyncio.Queue(READ_AHEAD)
    task = asyncio.current_task()

    async def read() -> None:
        try:
            async for message in iterator:
                await queue.put(message)
        except GatewayError as e:
            await queue.put(e)
        finally:
            await queue.put(None)

    async def watch() -> None:
        while (await r.receive())["type"] != "http.disconnect":
            pass
        reader.cancel()  # stops the runner's stream, and so the model's generator
        task.cancel()

    reader = asyncio.ensure_future(read())
    watcher = asyncio.ensure_future(watch())
    try:
        while not done:
            pending = [await queue.get()]
            while not queue.empty():
                pending.append(queue.get_nowait())
            out = []
            for message in pending:
                chunk, done = frame(message)
                out.append(chunk)
                if done:
                    break
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": not done})
    except asyncio.CancelledError:
        if watcher.done():
            return  # the client left; nothing more to send
        raise
    finally:
        watcher.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)  # it holds the iterator until it ends
        await iterator.aclose()


def _items(message: pb.StreamResponse, head: bytes, tail: bytes) -> bytes:
    """Each item as ``head + {"output": ...} + tail``, joined. A stream's items are mostly strings
    (tokens): those are written with the C string encoder, not a dict through the JSON encoder
    (a fifth of the time per item, which W2's thousands of items per second feel)."""
    out = []
    for v in message.items:
        if v.WhichOneof("kind") == "str":
            out.append(head + _str_json(v.str).encode() + tail)
        else:
            out.append(head + _encode(_json.to_json(v)).encode() + tail)
    return b"".join(out)


def _sse_frame(message: Any) -> tuple[bytes, bool]:
    if message is None:  # the runner's stream ended without its end marker
        e = GatewayError(502, "UNAVAILABLE", "the stream broke off (the replica went away?)")
        return b"event: error\ndata: " + dumps(e.body()) + b"\n\n", True
    if isinstance(message, GatewayError):
        return b"event: error\ndata: " + dumps(message.body()) + b"\n\n", True
    out = _items(message, b'data: {"output":', b"}\n\n")
    if message.HasField("error"):
        err = from_status(message.error.code, message.error.message, message.error.type)
        return out + b"event: error\ndata: " + dumps(err.body()) + b"\n\n", True
    if message.HasField("end"):
        return out + b"event: end\ndata: {}\n\n", True
    return out, False


def _ndjson_frame(message: Any) -> tuple[bytes, bool]:
    if message is None:
        e = GatewayError(502, "UNAVAILABLE", "the stream broke off (the replica went away?)")
        return dumps(e.body()) + b"\n", True
    if isinstance(message, GatewayError):
        return dumps(message.body()) + b"\n", True
    out = _items(message, b'{"output":', b"}\n")
    if message.HasField("error"):
        err = from_status(message.error.code, message.error.message, message.error.type)
        return out + dumps(err.body()) + b"\n", True
    if message.HasField("end"):
        return out + b'{"end":true}\n', True
    return out, False

