"""The OpenAI-compatible endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``GET /v1/models``.

``model`` names one of the caller's deployments, or a model as ``user/app/model`` (routed as
the client routes). Chat goes to the method declared ``@ModelClass.method(openai="chat")``,
else the model's only method with a ``messages`` parameter; completions to the one declared
``openai="completion"``, else the only method with a ``prompt`` parameter. The sampling
arguments (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``) are passed where the
method has parameters of those names. A streaming method answers ``stream: true`` chunk by
chunk (SSE, then ``data: [DONE]``) and a plain request with its chunks joined.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from ..model.signature import SERVER_STREAM, UNARY, MethodSpec
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb
from . import _json
from ._app import bearer, dumps, send_json, stream_response
from ._routes import GatewayError, Route, Target, from_status

SAMPLING = ("max_tokens", "temperature", "top_p", "stop", "seed")
_KIND = {"chat": "messages", "completion": "prompt"}


def _error(e: GatewayError) -> dict:
    """An error in OpenAI's shape (its clients read ``error.message``)."""
    kind = "invalid_request_error" if e.status < 500 else "server_error"
    if e.status == 401:
        kind = "authentication_error"
    return {"error": {"message": e.message, "type": kind, "param": e.parameter, "code": e.code}}


def target_of(model: Any) -> Target:
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "INVALID_ARGUMENT", "'model' is required: a deployment id, or user/app/model",
                           parameter="model")
    parts = model.strip("/").split("/")
    if len(parts) == 1:
        return Target(deployment_id=parts[0])
    if len(parts) == 4 and parts[2] == "models":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) == 3 and all(parts):
        return Target(model=(parts[0], parts[1], parts[2]))
    raise GatewayError(400, "INVALID_ARGUMENT", f"model {model!r}: give a deployment id or user/app/model",
                       parameter="model")


def pick_method(route: Route, kind: str, target: Target) -> MethodSpec:
    """The method that serves ``kind`` ("chat" or "completion")."""
    declared = [s for s in route.specs.values() if s.openai == kind]
    if declared:
        return declared[0]
    param = _KIND[kind]
    takes = [s for s in route.specs.values() if s.shape != "bidi" and any(p.name == param for p in s.params)]
    if len(takes) == 1 and takes[0].returns.kind == "str":
        return takes[0]
    how = f"declare one with @ModelClass.method(openai={kind!r})"
    if len(takes) > 1:
        raise GatewayError(400, "INVALID_ARGUMENT", f"{target} has several methods with a '{param}' parameter "
                           f"({', '.join(s.name for s in takes)}): {how}", parameter="model")
    raise GatewayError(400, "INVALID_ARGUMENT", f"{target} has no method for {kind} completions (one that "
                       f"takes '{param}' and returns str or Iterator[str]): {how}", parameter="model")


class OpenAI:
    def __init__(self, app: Any):
        self.app = app

    async def http(self, r: Any, parts: list[str]) -> None:
        try:
            if parts == ["chat", "completions"] and r.method == "POST":
                return await self.complete(r, "chat")
            if parts == ["completions"] and r.method == "POST":
                return await self.complete(r, "completion")
            if parts[0] == "models" and r.method == "GET" and len(parts) <= 2:
                return await self.models(r, parts[1] if len(parts) == 2 else None)
            raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")
        except GatewayError as e:
            headers = [(b"retry-after", str(max(1, round(e.retry_after))).encode())] if e.retry_after else None
            await send_json(r.send, e.status, _error(e), headers)

    async def models(self, r: Any, one: str | None) -> None:
        pat = bearer(r)
        listing = await self.app.routes.control(pat, "List", cpb.ListRequest(
            parent=cpb.ResourceRef(kind="deployment")), cpb.ListResponse)
        data = [{"id": d.id, "object": "model", "created": int(d.created_at), "owned_by": d.user_id}
                for d in listing.resources]
        if one is None:
            return await send_json(r.send, 200, {"object": "list", "data": data})
        found = next((d for d in data if d["id"] == one), None)
        if found is None:
            raise GatewayError(404, "NOT_FOUND", f"no deployment {one!r}", parameter="model")
        await send_json(r.send, 200, found)

    async def complete(self, r: Any, kind: str) -> None:
        pat = bearer(r)
        try:
            body = json.loads(await self.app.body(r) or b"{}")
        except ValueError as e:
            raise GatewayError(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "INVALID_ARGUMENT", "the body must be a JSON object")
        model = body.get("model")
        target = target_of(model)
        route = await self.app.routes.route(pat, target)
        spec = pick_method(route, kind, target)
        args = self._arguments(body, kind, spec)
        request = await self.app.encode(spec, args)
        stream = body.get("stream") is True
        name = "chat.completion" if kind == "chat" else "text_completion"
        ident = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        if spec.shape == UNARY:
            value = await self.app.routes.unary(pat, target, route, request)
            text = _text(value)
            if not stream:
                return await send_json(r.send, 200, _whole(kind, name, ident, created, model, text))
            messages = _single(value)
        elif spec.shape == SERVER_STREAM:
            messages = self.app.routes.server_stream(pat, target, route, request)
            if not stream:
                text = await _joined(messages)
                return await send_json(r.send, 200, _whole(kind, name, ident, created, model, text))
        else:
            raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() is bidirectional; it cannot serve {kind}")
        await stream_response(r, messages, frame=_Chunks(kind, ident, created, model))

    def _arguments(self, body: dict, kind: str, spec: MethodSpec) -> dict:
        params = {p.name: p for p in spec.params}
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise GatewayError(400, "INVALID_ARGUMENT", "'messages' must be a non-empty list of "
                                   "{role, content} objects", parameter="messages")
            args: dict[str, Any] = {"messages": [_message(m) for m in messages]}
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise GatewayError(400, "INVALID_ARGUMENT", "'prompt' must be a string", parameter="prompt")
            args = {"prompt": prompt}
        if body.get("n", 1) != 1:
            raise GatewayError(400, "INVALID_ARGUMENT", "only n=1 is served", parameter="n")
        sampling = dict(body)
        if "max_tokens" not in sampling and "max_completion_tokens" in sampling:
            sampling["max_tokens"] = sampling["max_completion_tokens"]
        for name in SAMPLING:
            value = sampling.get(name)
            p = params.get(name)
            if value is None or p is None:
                continue
            node = p.type.args[0] if p.type.kind == "optional" else p.type
            if node.kind == "list" and isinstance(value, str):
                value = [value]  # "stop": one string or a list of them
            elif node.kind == "str" and isinstance(value, list) and len(value) == 1:
                value = value[0]
            args[name] = value
        return args


def _message(m: Any) -> dict:
    if not isinstance(m, dict) or not isinstance(m.get("role"), str):
        raise GatewayError(400, "INVALID_ARGUMENT", "each message is an object with 'role' and 'content'",
                           parameter="messages")
    content = m.get("content")
    if isinstance(content, list):  # content parts: the text ones, joined
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return {"role": m["role"], "content": content if isinstance(content, str) else ""}


def _text(value: pb.Value) -> str:
    out = _json.to_json(value)
    return out if isinstance(out, str) else json.dumps(out)


def _whole(kind: str, name: str, ident: str, created: int, model: str, text: str) -> dict:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"id": ident, "object": name, "created": created, "model": model, "choices": [choice]}


async def _joined(messages: AsyncIterator[pb.StreamResponse]) -> str:
    parts = []
    async for message in messages:
        parts += [_text(v) for v in message.items]
        if message.HasField("error"):
            raise from_status(message.error.code, message.error.message, message.error.type)
        if message.HasField("end"):
            return "".join(parts)
    raise GatewayError(502, "UNAVAILABLE", "the stream broke off (the replica went away?)")


async def _single(value: pb.Value) -> AsyncIterator[pb.StreamResponse]:
    yield pb.StreamResponse(items=[value], end=pb.End(count=1))


class _Chunks:
    """SSE chunks in OpenAI's streaming shape, then ``data: [DONE]``."""

    def __init__(self, kind: str, ident: str, created: int, model: str):
        self.kind, self.ident, self.created, self.model = kind, ident, created, model
        self.object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self.started = False

    def _chunk(self, text: str | None, finish: str | None = None, role: bool = False) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return b"data: " + dumps({"id": self.ident, "object": self.object, "created": self.created,
                                  "model": self.model, "choices": [choice]}) + b"\n\n"

    def __call__(self, message: Any) -> tuple[bytes, bool]:
        out = []
        if not self.started and self.kind == "chat":
            out.append(self._chunk("", role=True))
        self.started = True
        if message is None or isinstance(message, GatewayError):
            e = message or GatewayError(502, "UNAVAILABLE", "the stream broke off (the replica went away?)")
            return b"".join(out) + b"data: " + dumps(_error(e)) + b"\n\n", True
        out += [self._chunk(_text(v)) for v in message.items]
        if message.HasField("error"):
            e = from_status(message.error.code, message.error.message, message.error.type)
            out.append(b"data: " + dumps(_error(e)) + b"\n\n")
            return b"".join(out), True
        if message.HasField("end"):
            out.append(self._chunk(None, finish="stop"))
            out.append(b"data: [DONE]\n\n")
            return b"".join(out), True
        return b"".join(out), False
