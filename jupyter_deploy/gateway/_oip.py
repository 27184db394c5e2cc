"""Open Inference Protocol v2 (KServe / Triton) over REST; ``_oip_grpc`` serves the same over gRPC.

``{model}`` is one of the caller's deployments, else (as the client routes) a model of the
caller's (app ``default``) served by its default deployment. ``parameters.method`` picks the
method (default ``predict``, else the model's only unary method); its parameters and result
map onto tensors as ``_tensors`` says. The binary tensor data extension is supported both
ways (``Inference-Header-Content-Length``; inputs with ``parameters.binary_data_size``; outputs
asked for with ``parameters.binary_data`` or the request's ``binary_data_output``).

    GET  /v2                      server metadata        GET /v2/health/live|ready (no token)
    GET  /v2/models/{model}[/versions/{v}]                model metadata
    GET  /v2/models/{model}[/versions/{v}]/ready
    POST /v2/models/{model}[/versions/{v}]/infer
"""

from __future__ import annotations

import json
from typing import Any

from .._version import __version__
from ..model.signature import UNARY, MethodSpec
from . import _tensors
from ._app import Request, bearer, dumps, send_json
from ._routes import GatewayError, Route, Target

SERVER = "jupyter_deploy"
EXTENSIONS = ["binary_tensor_data"]


class Input:
    __slots__ = ("name", "datatype", "shape", "data")

    def __init__(self, name: str, datatype: str, shape: list[int], data: Any):
        self.name, self.datatype, self.shape, self.data = name, datatype, shape, data


class OIP:
    """The protocol's operations (shared by REST and gRPC) and its REST endpoints."""

    def __init__(self, app: Any):
        self.app = app
        self._targets: dict[tuple[str, str], Target] = {}  # (token, model name) -> what it named

    # ------------------------------------------------------------ operations

    async def resolve(self, pat: str, name: str, version: str = "") -> tuple[Target, Route]:
        """The route ``name`` names for this caller: a deployment of theirs, else a model of theirs."""
        if not name:
            raise GatewayError(400, "INVALID_ARGUMENT", "name the model (a deployment id)")
        routes = self.app.routes
        target = self._targets.get((pat, name))
        if target is not None:
            route = await routes.route(pat, target)
        else:
            target = Target(deployment_id=name)
            try:
                route = await routes.route(pat, target)
            except GatewayError as e:
                if e.status != 404:
                    raise
                target = Target(model=("", "", name))
                try:
                    route = await routes.route(pat, target)
                except GatewayError as e2:
                    if e2.status != 404:
                        raise
                    raise GatewayError(404, "NOT_FOUND", f"no deployment or model {name!r} of yours") from None
            if len(self._targets) > 10_000:
                self._targets.clear()
            self._targets[(pat, name)] = target
        if version and version != route.version_id:
            raise GatewayError(404, "NOT_FOUND", f"{name} serves version {route.version_id}, not {version}")
        return target, route

    def method(self, route: Route, name: str, method: str | None) -> MethodSpec:
        if method:
            spec = route.specs.get(method)
            if spec is None:
                raise GatewayError(404, "NOT_FOUND", f"{name} has no method {method!r} "
                                   f"(methods: {', '.join(route.specs)})")
        else:
            unary = [s for s in route.specs.values() if s.shape == UNARY]
            spec = route.specs.get("predict") or (unary[0] if len(unary) == 1 else None)
            if spec is None:
                raise GatewayError(400, "INVALID_ARGUMENT", f"{name} has no method 'predict': pick one with "
                                   f"parameters.method (methods: {', '.join(route.specs)})", parameter="method")
        if spec.shape != UNARY:
            raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() streams; the Open Inference Protocol "
                               f"calls unary methods (use /v1/deployments/.../methods/{spec.name})",
                               parameter="method")
        return spec

    def model_metadata(self, name: str, route: Route, method: str | None = None) -> dict:
        spec = self.method(route, name, method)
        inputs, outputs = _tensors.metadata(spec)
        return {"name": name, "versions": [route.version_id], "platform": SERVER,
                "inputs": inputs, "outputs": outputs}

    async def infer(self, pat: str, name: str, version: str, method: str | None,
                    inputs: list[Input]) -> tuple[Route, list[tuple[str, str, list[int], Any]]]:
        target, route = await self.resolve(pat, name, version)
        spec = self.method(route, name, method)
        request = _request(spec, inputs)
        value = await self.app.routes.unary(pat, target, route, request)
        return route, _tensors.outputs(spec, value)

    # ------------------------------------------------------------ REST

    async def http(self, r: Request, parts: list[str]) -> None:
        try:
            await self._http(r, parts)
        except GatewayError as e:
            headers = [(b"retry-after", str(max(1, round(e.retry_after))).encode())] if e.retry_after else []
            if e.status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="jupyter_deploy"'))
            await send_json(r.send, e.status, {"error": e.message}, headers)  # the protocol's error shape

    async def _http(self, r: Request, parts: list[str]) -> None:
        if parts in ([], [""]) and r.method == "GET":
            return await send_json(r.send, 200, {"name": SERVER, "version": __version__, "extensions": EXTENSIONS})
        if parts[0] == "health" and len(parts) == 2 and r.method == "GET":
            if parts[1] == "live":
                return await send_json(r.send, 200, {"live": True})
            if parts[1] == "ready":
                ready = await self.app.routes.daemon_ready()
                return await send_json(r.send, 200 if ready else 503, {"ready": ready})
        if parts[0] == "models" and len(parts) >= 2:
            name, rest = parts[1], parts[2:]
            version = ""
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            pat = bearer(r)
            if not rest and r.method == "GET":
                _, route = await self.resolve(pat, name, version)
                return await send_json(r.send, 200, self.model_metadata(name, route, r.query.get("method")))
            if rest == ["ready"] and r.method == "GET":
                try:
                    await self.resolve(pat, name, version)
                except GatewayError as e:
                    if e.status != 503:
                        raise
                    return await send_json(r.send, 503, {"name": name, "ready": False})
                return await send_json(r.send, 200, {"name": name, "ready": True})
            if rest == ["infer"] and r.method == "POST":
                return await self._infer(r, pat, name, version)
        raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")

    async def _infer(self, r: Request, pat: str, name: str, version: str) -> None:
        body = await self.app.body(r)
        header_length = r.header(b"inference-header-content-length")
        binary = b""
        if header_length:
            if not header_length.isdigit() or int(header_length) > len(body):
                raise GatewayError(400, "INVALID_ARGUMENT", "Inference-Header-Content-Length is larger than the body")
            body, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
        try:
            req = json.loads(body)
        except ValueError as e:
            raise GatewayError(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {e}") from None
        if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
            raise GatewayError(400, "INVALID_ARGUMENT", "an inference request is an object with 'inputs' (a list "
                               "of {name, datatype, shape, data})")
        params = req.get("parameters") or {}
        inputs, offset = [], 0
        for i, t in enumerate(req["inputs"]):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(
                    t.get("datatype"), str) or not isinstance(t.get("shape"), list):
                raise GatewayError(400, "INVALID_ARGUMENT", f"inputs[{i}] needs name, datatype and shape")
            size = (t.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                if not isinstance(size, int) or offset + size > len(binary):
                    raise GatewayError(400, "INVALID_ARGUMENT", f"input '{t['name']}': binary_data_size is past the "
                                       "end of the body", parameter=t["name"])
                data: Any = binary[offset:offset + size]
                offset += size
            elif "data" in t:
                data = t["data"]
            else:
                raise GatewayError(400, "INVALID_ARGUMENT", f"input '{t['name']}' has no data", parameter=t["name"])
            inputs.append(Input(t["name"], t["datatype"], t["shape"], data))
        method = params.get("method")
        route, outs = await self.infer(pat, name, version, method if isinstance(method, str) else None, inputs)
        wanted = req.get("outputs")
        binary_all = params.get("binary_data_output") is True
        asked: dict[str, bool] = {}
        if isinstance(wanted, list):
            for o in wanted:
                if isinstance(o, dict) and isinstance(o.get("name"), str):
                    asked[o["name"]] = bool((o.get("parameters") or {}).get("binary_data", binary_all))
            unknown = set(asked) - {o[0] for o in outs}
            if unknown:
                raise GatewayError(400, "INVALID_ARGUMENT", f"no output {sorted(unknown)[0]!r} (outputs: "
                                   f"{', '.join(o[0] for o in outs)})")
        tensors, blobs = [], []
        for out_name, datatype, shape, arr in outs:
            if asked and out_name not in asked:
                continue
            entry: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": shape}
            if asked.get(out_name, binary_all):
                blob = _tensors.raw_data(datatype, arr)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = _tensors.json_data(datatype, arr)
            tensors.append(entry)
        response: dict[str, Any] = {"model_name": name, "model_version": route.version_id, "outputs": tensors}
        if isinstance(req.get("id"), str):
            response["id"] = req["id"]
        if not blobs:
            return await send_json(r.send, 200, response)
        head = dumps(response)
        payload = b"".join([head, *blobs])
        await r.send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"), (b"content-length", str(len(payload)).encode()),
            (b"inference-header-content-length", str(len(head)).encode())]})
        await r.send({"type": "http.response.body", "body": payload})


def _request(spec: MethodSpec, inputs: list[Input]) -> Any:
    from ..proto import runner_pb2 as pb

    request = pb.PredictRequest(method=spec.name)
    seen = set()
    for t in inputs:
        if t.name in seen:
            raise GatewayError(400, "INVALID_ARGUMENT", f"input '{t.name}' is given twice", parameter=t.name)
        seen.add(t.name)
        arr = _tensors.array(t.datatype, t.shape, t.data, t.name)
        entry = request.args.add()
        entry.key = t.name
        entry.value.CopyFrom(_tensors.to_value(spec, t.name, t.datatype, arr))
    missing = [p.name for p in spec.params if not p.stream and not p.has_default and p.name not in seen]
    if missing:
        raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() is missing input(s) {', '.join(missing)}",
                           parameter=missing[0])
    return request
