"""A deployment's HTTP endpoints on the gateway, and a ready-to-paste ``curl`` line.

Built from the gateway's URL and the served version's method signatures (see
``Deployment.describe``); nothing here talks to the network.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Iterable

from ..model.signature import BIDI, SERVER_STREAM, UNARY, MethodSpec, TypeNode

#: What a curl example sends for a parameter of each type.
_EXAMPLES = {"str": "hello", "int": 1, "float": 1.0, "bool": True, "none": None,
             "bytes": {"base64": "aGVsbG8="}, "image": {"url": "https://example.com/image.jpg"},
             "audio": {"url": "https://example.com/audio.wav"}, "video": {"url": "https://example.com/video.mp4"},
             "ndarray": {"dtype": "float32", "shape": [2], "data": [1.0, 2.0]},
             "dataframe": {"columns": ["a"], "data": [[1]]}, "concept": {"id": "cat"},
             "region": {"box": [0, 0, 1, 1]}, "json": {}}


def example(node: TypeNode) -> Any:
    """A value of type ``node`` in its JSON form, for an example call."""
    if node.kind == "optional":
        return example(node.args[0])
    if node.kind == "list":
        return [example(node.args[0])]
    if node.kind == "dict":
        return {"key": example(node.args[0])}
    if node.kind == "dataclass":
        return {name: example(t) for name, t in node.fields}
    if node.kind == "frame":
        return {"image": _EXAMPLES["image"], "time": 0.0}
    if node.kind == "json":
        return [] if node.name == "list" else {}
    return _EXAMPLES.get(node.kind)


def curl(url: str, spec: MethodSpec) -> str:
    """A curl line that calls ``spec`` at ``url`` with example values of its required parameters."""
    args = {p.name: example(p.type) for p in spec.params if not p.has_default or p.stream}
    if spec.shape == BIDI and spec.stream_param is not None:
        args[spec.stream_param.name] = [example(spec.stream_param.type)]
    flags = "-N " if spec.shape != UNARY else ""
    return (f"curl {flags}-X POST {url} -H \"Authorization: Bearer $JUPYTER_DEPLOY_PAT\" "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(args))}")


def endpoints(gateway_url: str | None, grpc_address: str | None, deployment_id: str,
              specs: Iterable[MethodSpec]) -> dict:
    """The deployment's URLs on the gateway: REST per method, WebSocket for bidirectional ones,
    the methods' JSON Schema, OpenAI-compatible and Open Inference Protocol bases, and ``curl``
    (a call of the first method). Empty without a gateway."""
    if not gateway_url:
        return {}
    specs = list(specs)
    base = f"{gateway_url}/v1/deployments/{deployment_id}"
    out: dict[str, Any] = {
        "gateway": gateway_url,
        "methods": f"{base}/methods",
        "rest": {s.name: f"{base}/methods/{s.name}" for s in specs},
    }
    ws = {s.name: f"{base.replace('http', 'ws', 1)}/methods/{s.name}/stream" for s in specs if s.shape == BIDI}
    if ws:
        out["websocket"] = ws
    streams = [s.name for s in specs if s.shape == SERVER_STREAM]
    if streams:
        out["server_sent_events"] = streams
    if any(s.openai or any(p.name in ("messages", "prompt") for p in s.params) for s in specs):
        out["openai"] = {"base_url": f"{gateway_url}/v1", "model": deployment_id}
    if any(s.shape == UNARY for s in specs):
        out["open_inference_protocol"] = {"rest": f"{gateway_url}/v2/models/{deployment_id}",
                                          "grpc": grpc_address or None}
    if specs:
        out["curl"] = curl(out["rest"][specs[0].name], specs[0])
    return out
