"""Personal access tokens: the daemon's secret, token digests, the local user's token.

A token is ``jdp_`` and 43 URL-safe characters (256 random bits). The store
keeps only an HMAC-SHA256 of it under the daemon's secret: a keyed hash is
enough for random 256-bit tokens (no salt or slow hash needed), and a copy of
``state.db`` alone lets no one forge or recover a token.

Example::

    secret = server_secret(home)
    token_id, token = create_token(store, secret, "local")
    assert authenticate(store, secret, token) == "local"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import tempfile
from pathlib import Path

from .. import ids
from ._errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from ._store import Store, now

TOKEN_PREFIX = "jdp_"
#: The built-in admin: the one who started the daemon (its token is ``home/local.token``).
LOCAL_USER = "local"
#: The built-in owner of the models the package ships; it has no token: nobody logs in as it.
PLATFORM_USER = "platform"
DEFAULT_APP = "default"


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` unless it exists; False if it did.

    Readers never see a partial file: the data goes to a temporary file that is
    then hard-linked into place, which fails if ``path`` exists.
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` so that readers see the old content or the new, never a mix."""
    os.replace(_write_temp(path, data, mode), path)


def _write_temp(path: Path, data: bytes, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def server_secret(home: Path) -> bytes:
    """The daemon's 32-byte secret in ``home/secret.key`` (mode 0600), made on first use."""
    path = Path(home) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_exclusive(path, secrets.token_bytes(32))
    secret = path.read_bytes()
    if len(secret) != 32:
        raise RuntimeError(f"{path} is damaged ({len(secret)} bytes, expected 32); delete it "
                           f"(every token is then invalid, the local one is remade)")
    return secret


def token_digest(secret: bytes, token: str) -> str:
    """The hex HMAC-SHA256 of ``token`` under ``secret``: what the store keeps."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def create_token(store: Store, secret: bytes, user_id: str) -> tuple[str, str]:
    """A new token for ``user_id``; returns ``(token_id, token)``. Only its digest is stored."""
    with store.tx() as db:
        return _insert_token(db, secret, user_id)


def _insert_token(db: sqlite3.Connection, secret: bytes, user_id: str) -> tuple[str, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(8)
    db.execute("INSERT INTO tokens (id, user_id, digest, created_at) VALUES (?, ?, ?, ?)",
               (token_id, user_id, token_digest(secret, token), now()))
    return token_id, token


def ensure_local_user(store: Store, home: Path, secret: bytes) -> None:
    """Create the user ``local``, its app ``default`` and its token file ``home/local.token``.

    Also creates the built-in user ``platform`` (see ``ensure_platform_user``).
    The token file (mode 0600) is kept across restarts; it is remade only when
    the store does not know its token (a new ``state.db`` or ``secret.key``).
    """
    with store.tx() as db:
        _insert_user(db, LOCAL_USER, ignore_existing=True)
    ensure_platform_user(store)
    path = Path(home) / "local.token"
    try:
        if _user_of(store, secret, path.read_text().strip()) == LOCAL_USER:
            return
    except (FileNotFoundError, Unauthenticated):
        pass
    _, token = create_token(store, secret, LOCAL_USER)
    write_atomic(path, token.encode())


def ensure_platform_user(store: Store) -> None:
    """Create the user ``platform`` and its app ``default``; it gets no token."""
    with store.tx() as db:
        _insert_user(db, PLATFORM_USER, ignore_existing=True)


def _insert_user(db: sqlite3.Connection, user_id: str, ignore_existing: bool = False) -> float:
    created_at = now()
    verb = "INSERT OR IGNORE" if ignore_existing else "INSERT"
    db.execute(f"{verb} INTO users (id, created_at) VALUES (?, ?)", (user_id, created_at))
    db.execute("INSERT OR IGNORE INTO apps (user_id, id, created_at) VALUES (?, ?, ?)",
               (user_id, DEFAULT_APP, created_at))
    return created_at


# ---------------------------------------------------------------- users and tokens (the RPCs)


def is_admin(user_id: str) -> bool:
    return user_id == LOCAL_USER


def create_user(store: Store, secret: bytes, user_id: str) -> tuple[dict, str, str]:
    """A new user with its app ``default`` and a first token (the admin's RPC: ``_access``).

    Returns ``(user, token_id, token)``; ``user`` has id, created_at, admin.
    """
    ids.check_id("user", user_id, error=InvalidArgument)
    with store.tx() as db:
        if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
            raise AlreadyExists(f"user {user_id} already exists")
        created_at = _insert_user(db, user_id)
        token_id, token = _insert_token(db, secret, user_id)
    return {"id": user_id, "created_at": created_at, "admin": is_admin(user_id)}, token_id, token


def list_users(store: Store) -> list[dict]:
    """Every user (id, created_at, admin), oldest first (the admin's RPC: ``_access``)."""
    return [{"id": r["id"], "created_at": r["created_at"], "admin": is_admin(r["id"])}
            for r in store.query("SELECT id, created_at FROM users ORDER BY created_at, id")]


def list_tokens(store: Store, user_id: str) -> list[dict]:
    """``user_id``'s tokens (id, user_id, created_at, revoked_at or None), never their text."""
    return [dict(r) for r in store.query(
        "SELECT id, user_id, created_at, revoked_at FROM tokens WHERE user_id = ? "
        "ORDER BY created_at, id", (user_id,))]


def revoke_token(store: Store, user_id: str, token_id: str) -> dict:
    """Revoke one of ``user_id``'s own tokens (at once: every call checks the store).

    Another user's token, or no such token: NotFound. Revoking twice keeps the first time.
    """
    with store.tx() as db:
        db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                   (now(), token_id, user_id))
        row = db.execute("SELECT id, user_id, created_at, revoked_at FROM tokens "
                         "WHERE id = ? AND user_id = ?", (token_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"you have no token {token_id!r} (see `jupyter-deploy token list`)")
    return dict(row)


def authenticate(store: Store, secret: bytes, token: str) -> str:
    """The user id ``token`` belongs to; raises Unauthenticated (missing, unknown or revoked)."""
    if not token:
        raise Unauthenticated("missing token: send 'authorization: Bearer <token>' "
                              "(JUPYTER_DEPLOY_PAT, or the local token file)")
    return _user_of(store, secret, token)


def _user_of(store: Store, secret: bytes, token: str) -> str:
    row = store.one("SELECT user_id, revoked_at FROM tokens WHERE digest = ?",
                    (token_digest(secret, token),))
    if row is None:
        raise Unauthenticated("unknown token: this daemon did not issue it (check JUPYTER_DEPLOY_PAT "
                              "or the token you passed)")
    if row["revoked_at"] is not None:
        raise Unauthenticated("token revoked: ask for a new one (`jupyter-deploy token create`, "
                              "or the admin's `jupyter-deploy user create`)")
    return row["user_id"]
