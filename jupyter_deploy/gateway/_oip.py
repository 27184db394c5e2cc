"""Open Inference Protocol v2 (KServe / Triton): REST here, gRPC in ``_oip_grpc``."""

from __future__ import annotations

from typing import Any

from ._routes import GatewayError


class OIP:
    def __init__(self, app: Any):
        self.app = app

    async def http(self, r: Any, parts: list[str]) -> None:
        from ._app import send_json

        if parts == ["health", "live"]:
            return await send_json(r.send, 200, {"live": True})
        raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")
