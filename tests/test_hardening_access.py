"""The control plane's hardening, against real daemons: who may call each RPC (the admin-only
ones refuse others; every RPC answers a non-admin as its rule says), a private home folder,
damaged databases, a read-only home and undecodable requests."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from daemon_helpers import daemon_pid, deployed_echo, isolated_home, wait_for

from jupyter_deploy import Client, ControlPlaneError, Deployment, Model, _wire
from jupyter_deploy.client import _daemon
from jupyter_deploy.control._access import RPC_RULES
from jupyter_deploy.control._home import sandboxed
from jupyter_deploy.proto import control_pb2 as cpb

pytestmark = pytest.mark.timeout(120)

SERVICE = cpb.DESCRIPTOR.services_by_name["ControlPlane"]
#: What a non-admin's minimal request to an RPC the rules allow may answer: an answer, or an
#: objection about the (missing or empty) resource it names.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.FAILED_PRECONDITION}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "hardening_access") as home:
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Client:
    return Client()


@pytest.fixture(scope="module")
def bob(admin) -> tuple[Client, str]:
    _, token = admin.create_user("bob")
    return Client(pat=token), token


def test_a_non_admin_shutdown_is_refused_and_the_daemon_keeps_serving(home, admin, bob):
    client, _ = bob
    pid = daemon_pid(home)
    for stop_runners in (True, False):
        with pytest.raises(ControlPlaneError, match=r"only the admin \(local\) can stop the daemon") as e:
            client.call("Shutdown", cpb.ShutdownRequest(stop_runners=stop_runners))
        assert e.value.code == "PERMISSION_DENIED"
    assert client.call("GetInfo", cpb.InfoRequest()).pid == pid == daemon_pid(home)
    assert admin.call("GetInfo", cpb.InfoRequest()).pid == pid


def _call(channel: grpc.Channel, method, token: str) -> grpc.StatusCode:
    """Call ``method`` with its empty request as the holder of ``token``; the status it ends with."""
    request_type = getattr(cpb, method.input_type.name)
    output_type = getattr(cpb, method.output_type.name)
    path = f"/{SERVICE.full_name}/{method.name}"
    kind = ("stream_" if method.client_streaming else "unary_") + \
        ("stream" if method.server_streaming else "unary")
    call = getattr(channel, kind)(path, request_serializer=request_type.SerializeToString,
                                  response_deserializer=output_type.FromString)
    request = iter([request_type()]) if method.client_streaming else request_type()
    metadata = [(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)]
    try:
        if method.server_streaming:
            responses = call(request, timeout=10, metadata=metadata)
            next(responses, None)  # the first answer (Watch then streams on: not waited for)
            responses.cancel()
        else:
            call(request, timeout=10, metadata=metadata)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            return e.code()
    return grpc.StatusCode.OK


def test_every_rpc_answers_a_non_admin_as_its_rule_says(home, bob):
    assert set(SERVICE.methods_by_name) == set(RPC_RULES)
    _, token = bob
    with grpc.insecure_channel(Client().address) as channel:
        answers = {m.name: _call(channel, m, token) for m in SERVICE.methods}
    wrong = {}
    for rpc, code in answers.items():
        expected = {grpc.StatusCode.PERMISSION_DENIED} if RPC_RULES[rpc].admin_only else ALLOWED
        if code not in expected:
            wrong[rpc] = code.name
    assert not wrong, f"unexpected answers to a non-admin: {wrong}"
    assert Client(pat=token).call("GetInfo", cpb.InfoRequest()).user_id == "bob"  # still serving


# ---------------------------------------------------------------- the home folder and its files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_restart_makes_a_loose_home_and_its_secrets_private_again(tmp_path_factory):
    with isolated_home(tmp_path_factory, "loose_home") as home:
        client = Client()
        client.set_secret("api_key", "s3cr3t")
        _daemon.stop()
        client.close()
        # As a home made by hand (mkdir: 0755) or copied with a umask of 022 would be.
        home.chmod(0o755)
        for name in ("state.db", "logs.db", "secret.key", "local.token", "secrets/local/api_key"):
            (home / name).chmod(0o644)
        for name in ("secrets", "secrets/local"):
            (home / name).chmod(0o755)
        assert Client().call("GetInfo", cpb.InfoRequest()).user_id == "local"
        # Where runners run as OS users of their own (a root daemon), they pass through the home.
        assert _mode(home) == (0o711 if sandboxed() else 0o700)
        for name in ("state.db", "state.db-wal", "state.db-shm", "logs.db", "secret.key", "local.token",
                     "daemon.json", "secrets/local/api_key"):
            assert _mode(home / name) == 0o600, name
        for name in ("secrets", "secrets/local"):
            assert _mode(home / name) == 0o700, name


# ---------------------------------------------------------------- damaged files, bad requests


def test_a_corrupt_call_log_is_moved_aside_and_call_logs_work_again(tmp_path_factory):
    with deployed_echo(tmp_path_factory, "corrupt_logs") as (client, home):
        _daemon.stop()
        client.close()
        for suffix in ("-wal", "-shm"):
            (home / f"logs.db{suffix}").unlink(missing_ok=True)
        garbage = os.urandom(8192)
        (home / "logs.db").write_bytes(garbage)

        client = Client()
        assert client.call("GetInfo", cpb.InfoRequest()).user_id == "local"
        aside = list(home.glob("logs.db.corrupt-*"))
        assert [p.read_bytes() for p in aside if p.name.count("-") == 1] == [garbage]
        log = (home / "logs" / "daemon.log").read_text()
        assert f"{home / 'logs.db'} is damaged" in log and "moved it aside" in log
        echo = Deployment(deployment_id="echo", client=client)
        echo.wait_until_ready(120)
        Model(model_id="echo", client=client).predict("after")
        wait_for(lambda: not echo.access_logs().empty, 20, "the call to be logged in the new logs.db")
        client.close()


def _serve(home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_deploy.control", "serve", "--home", str(home)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_corrupt_state_db_is_one_line_that_says_what_to_do(tmp_path):
    (tmp_path / "state.db").write_bytes(os.urandom(8192))
    done = _serve(tmp_path)
    state = tmp_path / "state.db"
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {state} is damaged (file is not a database)")
    assert "restore it from a backup" in done.stderr and f"mv {state} {state}.bad" in done.stderr


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` read-only for this process: a read-only bind mount for root, else its mode."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("root here cannot make a read-only bind mount")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_home_is_one_line_that_says_what_to_do(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with _read_only(home):
        done = _serve(home)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: the home folder {home} is not writable (")
    assert f"chmod u+rwx {home}" in done.stderr and "JUPYTER_DEPLOY_HOME" in done.stderr


def test_bytes_that_are_not_a_request_are_invalid_argument(home, admin):
    token = (home / "local.token").read_text().strip()
    metadata = [(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)]
    garbage = b"\xff\xff\xff\xff" + os.urandom(64)
    with grpc.insecure_channel(admin.address) as channel:
        for rpc, kind in (("GetInfo", "unary_unary"), ("Watch", "unary_stream"),
                          ("UploadModel", "stream_unary")):
            call = getattr(channel, kind)(f"/{SERVICE.full_name}/{rpc}")
            with pytest.raises(grpc.RpcError) as e:
                answer = call(iter([garbage]) if kind == "stream_unary" else garbage,
                              timeout=10, metadata=metadata)
                if kind == "unary_stream":
                    next(answer)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, e.value.details())
            assert "is not a valid jupyter_deploy.v1." in e.value.details()
    assert admin.call("GetInfo", cpb.InfoRequest()).user_id == "local"  # still serving


def test_a_client_on_a_read_only_home_says_what_to_do(tmp_path):
    """Client() starts the daemon itself: a home it cannot write is the same one line, not an OSError."""
    home = tmp_path / "client_home"
    home.mkdir(mode=0o700)
    with _read_only(home):
        out = subprocess.run([sys.executable, "-c", "from jupyter_deploy import Client; Client()"],
                             env={**os.environ, "JUPYTER_DEPLOY_HOME": str(home)},
                             capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"the home folder {home} is not writable (" in out.stderr
    assert "OSError" not in out.stderr and "PermissionError" not in out.stderr
