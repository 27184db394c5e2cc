"""Users and personal access tokens, against a real daemon: the admin, tokens shown once, revocation."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from daemon_helpers import isolated_home

from jupyter_deploy import Client, ControlPlaneError
from jupyter_deploy.proto import control_pb2 as cpb

pytestmark = pytest.mark.timeout(120)

#: Every token this module saw; none may appear in the daemon's files.
SEEN_TOKENS: list[str] = []


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, 'users_home') as home:
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Client:
    client = Client()
    assert client.user_id == "local"
    SEEN_TOKENS.append((home / "local.token").read_text().strip())
    return client


@pytest.fixture(scope="module")
def bob(admin) -> tuple[Client, str]:
    user_id, token = admin.create_user("bob")
    SEEN_TOKENS.append(token)
    assert user_id == "bob" and token.startswith("jdp_")
    return Client(pat=token), token


def _refused(call, code: str, match: str) -> ControlPlaneError:
    with pytest.raises(ControlPlaneError, match=match) as e:
        call()
    assert e.value.code == code and "\n" not in str(e.value)
    return e.value


def _cli(home: Path, *args: str, pat: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT")}
    env["JUPYTER_DEPLOY_HOME"] = str(home)
    if pat:
        env["JUPYTER_DEPLOY_PAT"] = pat
    return subprocess.run([sys.executable, "-m", "jupyter_deploy", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_the_admin_creates_a_user_who_gets_a_working_token_and_an_app(home, admin, bob):
    client, _ = bob
    assert client.user_id == "bob"
    assert client.call("GetInfo", cpb.InfoRequest()).user_id == "bob"
    users = {u["id"]: u for u in admin.list_users()}
    assert {"local", "platform", "bob"} <= set(users)
    assert users["local"]["admin"] and not users["bob"]["admin"] and not users["platform"]["admin"]
    db = sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True)
    try:
        apps = set(db.execute("SELECT user_id, id FROM apps").fetchall())
        platform_tokens = db.execute("SELECT COUNT(*) FROM tokens WHERE user_id = 'platform'").fetchone()[0]
    finally:
        db.close()
    assert {("local", "default"), ("platform", "default"), ("bob", "default")} <= apps
    assert platform_tokens == 0 and not (home / "platform.token").exists()  # nobody logs in as platform

    _refused(lambda: admin.create_user("bob"), "ALREADY_EXISTS", "already exists")
    _refused(lambda: admin.create_user("platform"), "ALREADY_EXISTS", "already exists")
    for bad in ("with space", "a/b", "", "x" * 65):
        _refused(lambda bad=bad: admin.create_user(bad), "INVALID_ARGUMENT", "bad user id")
    assert admin.create_user("Dot.dash-under_1")[0] == "Dot.dash-under_1"


def test_a_user_id_starting_with_a_dot_is_refused_by_the_cli_and_the_client(home, admin):
    # The one rule of jupyter_deploy.ids: an id starts with a letter or digit, on every path.
    _refused(lambda: admin.create_user(".dotted"), "INVALID_ARGUMENT", "bad user id '.dotted'")
    result = _cli(home, "user", "create", ".dotted")
    assert result.returncode == 1 and result.stdout == ""
    assert "bad user id '.dotted': use letters, digits, '-', '_' and '.'; start with a letter or digit" \
        in result.stderr
    assert ".dotted" not in {u["id"] for u in admin.list_users()}


def test_only_the_admin_creates_or_lists_users(bob):
    client, _ = bob
    _refused(lambda: client.create_user("eve"), "PERMISSION_DENIED", r"only the admin \(local\) can create users")
    _refused(client.list_users, "PERMISSION_DENIED", r"only the admin \(local\) can list users")


def test_tokens_are_created_listed_and_revoked_at_once(admin, bob):
    client, first = bob
    token_id, token = client.create_token()
    SEEN_TOKENS.append(token)
    assert token.startswith("jdp_") and token != first
    second = Client(pat=token)
    assert second.user_id == "bob"
    listed = client.list_tokens()
    assert token_id in [t["id"] for t in listed] and len(listed) == 2
    assert all(t["user_id"] == "bob" and t["revoked_at"] is None for t in listed)
    assert not any(first in str(t) or token in str(t) for t in listed)  # shown once: never listed
    assert not {t["id"] for t in listed} & {t["id"] for t in admin.list_tokens()}

    # Only one's own: another user's token is not found, and stays valid.
    _refused(lambda: admin.revoke_token(token_id), "NOT_FOUND", token_id)
    _refused(lambda: client.revoke_token("tok_nope"), "NOT_FOUND", "tok_nope")
    assert second.call("GetInfo", cpb.InfoRequest()).user_id == "bob"

    revoked = client.revoke_token(token_id)
    assert revoked["id"] == token_id and revoked["revoked_at"]
    # The very next call with it is refused, on the connection that was already open too.
    _refused(lambda: second.call("GetInfo", cpb.InfoRequest()), "UNAUTHENTICATED", "^token revoked")
    _refused(lambda: Client(pat=token), "UNAUTHENTICATED", "^token revoked")
    assert {t["id"]: t["revoked_at"] for t in client.list_tokens()}[token_id] == revoked["revoked_at"]
    assert client.user_id == "bob" and client.call("GetInfo", cpb.InfoRequest()).user_id == "bob"


def test_a_wrong_or_missing_token_says_which(admin):
    _refused(lambda: Client(pat="jdp_" + "x" * 43), "UNAUTHENTICATED", "^unknown token")
    with pytest.raises(grpc.RpcError) as e:
        admin._stub.GetInfo(cpb.InfoRequest(), timeout=10, metadata=[])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.details().startswith("missing token") and "\n" not in e.value.details()


def test_the_pat_environment_variable_is_used(bob, monkeypatch):
    _, token = bob
    monkeypatch.setenv("JUPYTER_DEPLOY_PAT", token)
    assert Client().user_id == "bob"
    monkeypatch.setenv("JUPYTER_DEPLOY_PAT", "jdp_wrong")
    _refused(Client, "UNAUTHENTICATED", "^unknown token")
    assert Client(pat=token).user_id == "bob"  # an explicit pat wins over the environment


def test_the_cli_prints_a_new_users_token_once(home, admin):
    created = _cli(home, "user", "create", "carol")
    assert created.returncode == 0, created.stderr
    tokens = [w for w in created.stdout.split() if w.startswith("jdp_")]
    assert len(tokens) == 1 and "shown only once" in created.stdout
    token = tokens[0]
    SEEN_TOKENS.append(token)
    assert Client(pat=token).user_id == "carol"

    listed = _cli(home, "user", "list")
    assert listed.returncode == 0 and "carol" in listed.stdout and token not in listed.stdout
    denied = _cli(home, "user", "list", pat=token)
    assert denied.returncode == 1 and denied.stderr.strip().startswith("error: only the admin (local)")
    assert len(denied.stderr.strip().splitlines()) == 1

    new = _cli(home, "token", "create", pat=token)
    assert new.returncode == 0 and "shown only once" in new.stdout
    new_token = next(w for w in new.stdout.split() if w.startswith("jdp_"))
    SEEN_TOKENS.append(new_token)
    new_id = next(w.rstrip(":") for w in new.stdout.split() if w.startswith("tok_"))
    tokens_out = _cli(home, "token", "list", pat=token)
    assert tokens_out.returncode == 0 and new_id in tokens_out.stdout and new_token not in tokens_out.stdout
    revoked = _cli(home, "token", "revoke", new_id, pat=token)
    assert revoked.returncode == 0 and f"revoked token {new_id}" in revoked.stdout
    after = _cli(home, "token", "list", pat=new_token)
    assert after.returncode == 1 and after.stderr.startswith("error: token revoked")
    assert len(after.stderr.strip().splitlines()) == 1


def test_tokens_are_stored_hashed(home, admin, bob):
    assert len(SEEN_TOKENS) >= 2
    files = [p for p in home.iterdir() if p.name.startswith("state.db")]
    assert home / "state.db-wal" in files or (home / "state.db").exists()
    for path in files:
        data = path.read_bytes()
        for token in SEEN_TOKENS:
            assert token.encode() not in data, f"a token appears in {path.name}"
            assert token[4:].encode() not in data, f"a token's random part appears in {path.name}"
