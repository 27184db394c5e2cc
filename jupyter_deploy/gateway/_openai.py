"""The OpenAI-compatible endpoints: chat completions, completions, models."""

from __future__ import annotations

from typing import Any

from ._routes import GatewayError


class OpenAI:
    def __init__(self, app: Any):
        self.app = app

    async def http(self, r: Any, parts: list[str]) -> None:
        raise GatewayError(404, "NOT_FOUND", f"no such endpoint: {r.method} {r.path}")
