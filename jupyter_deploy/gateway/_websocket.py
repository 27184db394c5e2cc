"""Bidirectional (and server-streaming) methods over a WebSocket at ``.../methods/{method}/stream``.

The client's first message is ``{"arguments": {...}}`` (the non-streamed arguments, may be
empty); then one JSON item per message, and ``{"end": true}`` when done. The gateway sends
``{"output": item}`` per result, then ``{"end": true}`` or ``{"error": {...}}``, and closes.
A refused connection is accepted, told ``{"error": ...}`` and closed with code 4000 + the
HTTP status (4401, 4403, 4404, 4400).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from ..model.signature import BIDI, UNARY
from ..proto import runner_pb2 as pb
from . import _json
from ._app import App, Request, bearer, dumps, method_spec
from ._routes import GatewayError, Target, from_status

#: Items read from the client ahead of the runner.
READ_AHEAD = 64


class _Closed(Exception):
    """The client closed the socket."""


async def serve_websocket(app: App, scope: dict, receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    try:
        await _serve(app, Request(scope, receive, send), receive, send)
    except GatewayError as e:
        await _close(send, e.body(), 4000 + e.status)
    except _Closed:
        pass


async def _close(send: Any, last: dict, code: int = 1000) -> None:
    try:
        await send({"type": "websocket.send", "text": dumps(last).decode()})
        await send({"type": "websocket.close", "code": code})
    except Exception:  # noqa: BLE001 (the client may be gone already)
        pass


async def _next_json(receive: Any) -> Any:
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise _Closed()
    text = message.get("text")
    if text is None:
        text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError as e:
        raise GatewayError(400, "INVALID_ARGUMENT", f"a message is not valid JSON: {e}") from None


async def _serve(app: App, r: Request, receive: Any, send: Any) -> None:
    parts = r.path.strip("/").split("/")
    if len(parts) == 6 and parts[:2] == ["v1", "deployments"] and parts[3] == "methods" and parts[5] == "stream":
        target, method = Target(deployment_id=parts[2]), parts[4]
    elif (len(parts) == 10 and parts[:2] == ["v1", "users"] and parts[3] == "apps" and parts[5] == "models"
          and parts[7] == "methods" and parts[9] == "stream"):
        target, method = app._model_target(r, parts[2], parts[4], parts[6]), parts[8]
    else:
        raise GatewayError(404, "NOT_FOUND", f"no WebSocket endpoint at {r.path}")
    pat = bearer(r)
    route = await app.routes.route(pat, target)
    spec = method_spec(route, method, target)
    if spec.shape == UNARY:
        raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() is unary: POST to it instead")
    first = await _next_json(receive)
    if not isinstance(first, dict) or not isinstance(first.get("arguments", {}), dict):
        raise GatewayError(400, "INVALID_ARGUMENT", 'the first message must be {"arguments": {...}} '
                           "(the non-streamed arguments, may be empty)")
    request = await app.encode(spec, first.get("arguments", {}))
    if spec.shape != BIDI:
        messages = app.routes.server_stream(pat, target, route, request)
        await _pipe(messages, send)
        return
    stream = spec.stream_param
    encode = _json.encoder(stream.type, app.fetch)
    queue: asyncio.Queue = asyncio.Queue(READ_AHEAD)
    failed: list[GatewayError] = []

    async def read() -> None:
        """Client items into ``queue``; None when the client says it is done (or leaves)."""
        count = 0
        try:
            while True:
                item = await _next_json(receive)
                if isinstance(item, dict) and item.get("end") is True and len(item) == 1:
                    break
                try:
                    value = encode(item)
                except _json.Mismatch as e:
                    raise GatewayError(400, "INVALID_ARGUMENT", _json.JsonMismatch.describe(
                        e, f"{spec.name}() parameter", f"{stream.name}[{count}]"), parameter=stream.name) from None
                count += 1
                await queue.put(value)
        except GatewayError as e:
            failed.append(e)
            calls.cancel()
        except _Closed:
            calls.cancel()
        finally:
            await queue.put(None)

    async def items() -> AsyncIterator[list[pb.Value]]:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            done = batch[-1] is None
            batch = [v for v in batch if v is not None]
            if batch:
                yield batch
            if done:
                return

    calls = asyncio.current_task()
    reader = asyncio.ensure_future(read())
    try:
        await _pipe(app.routes.bidi(route, request, items()), send)
    except asyncio.CancelledError:
        if failed:
            await _close(send, failed[0].body(), 4000 + failed[0].status)
            return
        if reader.done():
            return  # the client left
        raise
    finally:
        reader.cancel()


async def _pipe(messages: AsyncIterator[pb.StreamResponse], send: Any) -> None:
    """The runner's stream to the client, one message per result, then end or error."""
    try:
        async for message in messages:
            for item in message.items:
                await send({"type": "websocket.send", "text": dumps({"output": _json.to_json(item)}).decode()})
            if message.HasField("error"):
                err = from_status(message.error.code, message.error.message, message.error.type)
                await _close(send, err.body())
                return
            if message.HasField("end"):
                await _close(send, {"end": True})
                return
    except GatewayError as e:
        await _close(send, e.body())
        return
    await _close(send, GatewayError(502, "UNAVAILABLE", "the stream broke off (the replica went away?)").body())
