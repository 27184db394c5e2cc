"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``)."""

from __future__ import annotations

from typing import Any


async def start_grpc(app: Any, address: str, tls_cert: str | None, tls_key: str | None) -> Any:
    return None
