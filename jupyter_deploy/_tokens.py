"""Route tokens: short-lived, signed by the control plane, checked by runners.

A token names the deployment and the caller and expires; it is
``<payload>.<signature>`` where the payload is URL-safe base64 of JSON and the
signature an Ed25519 signature of it by the deployment's route key. Runners get
only the public half (``JUPYTER_DEPLOY_VERIFY_KEY``, hex) and check every call
with it, so a model that reads its own runner's key still cannot make a token.
Clients send the token in the gRPC metadata key ``_wire.ROUTE_TOKEN_KEY``.

The private key is never stored: ``RouteKeys`` derives it from the daemon's
secret (``home/secret.key``) and the deployment's random salt (its row's
``signing_key`` column), so a copy of ``state.db`` alone signs nothing.

A runner also refuses a token that expires more than ``MAX_TTL`` seconds ahead,
whoever signed it: no token outlives that, whatever lifetime it claims.

Example::

    keys = RouteKeys(secret)
    token = keys.sign(salt_hex, deployment_id="echo", caller="local", ttl=10)
    claims = verify(keys.public(salt_hex), token, deployment_id="echo")   # raises TokenError if bad
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

#: Seconds a route token lives; clients renew at half its life. Short, so that a revoked
#: personal access token stops reaching runners within that time (its holder cannot renew).
DEFAULT_TTL = 10.0
#: Runners refuse a token that expires further ahead than this (the daemon never signs longer).
MAX_TTL = 60.0
#: Bytes of an Ed25519 public key.
PUBLIC_KEY_BYTES = 32


class TokenError(Exception):
    """A route token is missing, forged, for another deployment, expired, or lives too long."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: bytes, salt: bytes) -> Any:
    """The Ed25519 private key of a deployment: seeded by HMAC-SHA256(secret, salt)."""
    # cryptography is imported here, not at module level: `import jupyter_deploy` stays light.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hmac.new(secret, b"jupyter_deploy route key\0" + salt, hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(private_key: Any) -> bytes:
    """The 32 raw bytes of a private key's public half (what runners get, in hex)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key(data: bytes) -> Any:
    """An Ed25519 public key from its 32 raw bytes; TokenError when they are not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(data) != PUBLIC_KEY_BYTES:
        raise TokenError(f"a route verification key is {PUBLIC_KEY_BYTES} bytes, not {len(data)}")
    return Ed25519PublicKey.from_public_bytes(data)


def sign(private_key: Any, *, deployment_id: str, caller: str, ttl: float = DEFAULT_TTL,
         now: float | None = None, op: str = "") -> str:
    """A token for ``caller`` to call ``deployment_id``, valid for ``ttl`` seconds.

    ``op`` names a runner operation only the control plane may ask for (``"reload"``: a hot
    reload); a token without one is a caller's, good for calls into the model only.
    """
    claims = {"d": deployment_id, "c": caller, "e": (now or time.time()) + ttl}
    if op:
        claims["o"] = op
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_b64(private_key.sign(payload.encode()))}"


def verify(key: Any, token: str | None, *, deployment_id: str, now: float | None = None,
           max_ttl: float = MAX_TTL) -> dict:
    """The token's claims, or TokenError saying which check failed.

    ``key`` is the deployment's public key (``public_key()``), or its 32 raw bytes.
    """
    from cryptography.exceptions import InvalidSignature

    if not token:
        raise TokenError("no route token (resolve the route through the control plane)")
    if isinstance(key, (bytes, bytearray)):
        key = public_key(bytes(key))
    payload, _, signature = token.partition(".")
    try:
        key.verify(_unb64(signature), payload.encode())
    except (InvalidSignature, ValueError):
        raise TokenError("route token signature is invalid") from None
    try:
        claims = json.loads(_unb64(payload))
        expires = float(claims.get("e", 0))
    except (ValueError, TypeError, AttributeError):
        raise TokenError("route token is malformed") from None
    if claims.get("d") != deployment_id:
        raise TokenError(f"route token is for deployment {claims.get('d')!r}, not {deployment_id!r}")
    now = now or time.time()
    if expires < now:
        raise TokenError("route token has expired")
    if expires - now > max_ttl:
        raise TokenError(f"route token expires {expires - now:.0f} s from now, beyond this runner's limit of "
                         f"{max_ttl:g} s (route tokens are short-lived: resolve the route again)")
    return claims


class RouteKeys:
    """The route keys of every deployment, derived from the daemon's secret (and kept in memory).

    Thread-safe; a key is derived once per salt.
    """

    def __init__(self, secret: bytes):
        self._secret = secret
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    def private(self, salt_hex: str) -> Any:
        """The private key of the deployment whose salt is ``salt_hex``."""
        with self._lock:
            key = self._keys.get(salt_hex)
            if key is None:
                key = self._keys[salt_hex] = derive_key(self._secret, bytes.fromhex(salt_hex))
            return key

    def public(self, salt_hex: str) -> bytes:
        """The public key's raw bytes (a runner gets them in hex)."""
        return public_bytes(self.private(salt_hex))

    def sign(self, salt_hex: str, **claims: Any) -> str:
        """``sign()`` with the deployment's private key."""
        return sign(self.private(salt_hex), **claims)
