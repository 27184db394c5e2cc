"""Route tokens: short-lived, signed by the control plane, checked by runners.

A token names the deployment and the caller and expires; it is
``<payload>.<signature>`` where the payload is URL-safe base64 of JSON and the
signature an HMAC-SHA256 of it under the deployment's signing key. Runners get
the key in ``JUPYTER_DEPLOY_SIGNING_KEY`` and check every call with it; clients send
the token in the gRPC metadata key ``_wire.ROUTE_TOKEN_KEY``.

Example::

    token = sign(key, deployment_id="echo", caller="local", ttl=300)
    claims = verify(key, token, deployment_id="echo")   # raises TokenError if bad
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

#: Seconds a route token lives; clients renew a little before.
DEFAULT_TTL = 300.0


class TokenError(Exception):
    """A route token is missing, forged, for another deployment, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, *, deployment_id: str, caller: str, ttl: float = DEFAULT_TTL,
         now: float | None = None) -> str:
    """A token for ``caller`` to call ``deployment_id``, valid for ``ttl`` seconds."""
    claims = {"d": deployment_id, "c": caller, "e": (now or time.time()) + ttl}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def verify(key: bytes, token: str | None, *, deployment_id: str, now: float | None = None) -> dict:
    """The token's claims, or TokenError saying which check failed."""
    if not token:
        raise TokenError("no route token (resolve the route through the control plane)")
    payload, _, signature = token.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise TokenError("route token signature is invalid")
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        raise TokenError("route token is malformed") from None
    if claims.get("d") != deployment_id:
        raise TokenError(f"route token is for deployment {claims.get('d')!r}, not {deployment_id!r}")
    if float(claims.get("e", 0)) < (now or time.time()):
        raise TokenError("route token has expired")
    return claims
