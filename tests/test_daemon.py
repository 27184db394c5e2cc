"""The daemon's process lifecycle: auto-start, discovery, one daemon per home, status and stop.

Every test has its own JUPYTER_DEPLOY_HOME and real daemon processes; the
finalizer kills whatever daemon a test left (by the pid in its discovery file
and the pids the test saw, each the leader of its own process group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from jupyter_deploy import DeployError, __version__
from jupyter_deploy.client import _daemon
from jupyter_deploy.errors import ControlPlaneError
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.proto import control_pb2_grpc

pytestmark = pytest.mark.timeout(60)


class Home:
    """A private home folder, and the daemon pids seen in it (killed after the test)."""

    def __init__(self, path: Path):
        self.path = path
        self.pids: set[int] = set()

    def record(self) -> dict:
        record = json.loads((self.path / "daemon.json").read_text())
        self.pids.add(record["pid"])
        return record

    def kill_all(self) -> None:
        try:
            self.record()
        except (OSError, ValueError):
            pass
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    h = Home(tmp_path / "home")
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(h.path))
    monkeypatch.delenv("JUPYTER_DEPLOY_ADDRESS", raising=False)
    monkeypatch.delenv("JUPYTER_DEPLOY_PAT", raising=False)
    yield h
    h.kill_all()


def get_info(channel: grpc.Channel, metadata) -> cpb.Info:
    stub = control_pb2_grpc.ControlPlaneStub(channel)
    return stub.GetInfo(cpb.InfoRequest(), timeout=10, metadata=metadata)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_deploy", *args], check=False,
                          capture_output=True, text=True, timeout=60)


def test_first_connect_starts_a_daemon_and_the_next_reuses_it(home):
    channel, address, metadata = _daemon.connect()
    record = home.record()
    assert record["address"] == address and record["version"] == __version__
    info = get_info(channel, metadata)
    assert (info.pid, info.user_id, info.address) == (record["pid"], "local", address)
    assert info.home == str(home.path)
    # Its own session: a signal to the starting process's group never reaches it.
    assert os.getsid(info.pid) == info.pid != os.getsid(0)
    for name in ("local.token", "secret.key"):
        assert (home.path / name).stat().st_mode & 0o777 == 0o600
    assert (home.path / "local.token").read_text().startswith("jdp_")

    again, address2, metadata2 = _daemon.connect()
    assert address2 == address and get_info(again, metadata2).pid == info.pid
    # A second daemon on the same home refuses to start, and says where the first one is.
    second = subprocess.run([sys.executable, "-m", "jupyter_deploy.control", "serve"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and f"already runs for {home.path} at {address}" in second.stderr
    channel.close()
    again.close()


CONNECT = """
import sys, time
from pathlib import Path
from jupyter_deploy.client._daemon import connect
from jupyter_deploy.proto import control_pb2 as cpb, control_pb2_grpc
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
channel, address, metadata = connect()
print(control_pb2_grpc.ControlPlaneStub(channel).GetInfo(cpb.InfoRequest(), metadata=metadata).pid)
"""


def test_two_clients_starting_at_once_end_with_one_daemon(home, tmp_path):
    go = tmp_path / "go"
    clients = [subprocess.Popen([sys.executable, "-c", CONNECT, str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both have imported and wait for the same moment
    go.touch()
    outputs = [c.communicate(timeout=45) for c in clients]
    assert all(c.returncode == 0 for c in clients), outputs
    pids = {int(out) for out, _ in outputs}
    assert pids == {home.record()["pid"]}
    log = (home.path / "logs" / "daemon.log").read_text()
    assert log.count("listening on") == 1 and "already runs" not in log


def test_a_stale_discovery_file_is_detected_and_a_new_daemon_starts(home):
    _daemon.connect()[0].close()
    old = home.record()
    os.kill(old["pid"], signal.SIGKILL)
    wait_for(lambda: _daemon.discover() is None, 10, "the killed daemon's record to read as stale")
    assert (home.path / "daemon.json").exists()  # left behind by the kill

    channel, _, metadata = _daemon.connect()
    new = home.record()
    assert new["pid"] != old["pid"] and get_info(channel, metadata).pid == new["pid"]
    channel.close()


def test_no_autostart_for_a_non_loopback_address(home, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_ADDRESS", "192.0.2.1:7700")  # TEST-NET: nothing answers
    with pytest.raises(DeployError, match="only on a loopback address"):
        _daemon.connect()
    assert not (home.path / "logs").exists() and not (home.path / "daemon.json").exists()

    with pytest.raises(_daemon.DaemonNotRunning, match="no daemon answers at 192.0.2.1:7700"):
        _daemon.connect(autostart=False)
    refused = subprocess.run(
        [sys.executable, "-m", "jupyter_deploy.control", "serve", "--address", "0.0.0.0:0"],
        check=False, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "refusing to listen on 0.0.0.0" in refused.stderr


def test_autostart_on_exactly_the_loopback_address_asked_for(home, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("JUPYTER_DEPLOY_ADDRESS", address)
    channel, connected, metadata = _daemon.connect()
    assert connected == address == home.record()["address"] == get_info(channel, metadata).address
    channel.close()


def test_serve_in_the_foreground_stops_cleanly_on_sigterm(home):
    serve = subprocess.Popen([sys.executable, "-m", "jupyter_deploy", "serve"],
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _daemon.discover() is not None, 30, "the daemon to answer")
        assert home.record()["pid"] == serve.pid and _daemon.info().pid == serve.pid
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
    assert "stopped" in serve.stderr.read()
    assert not (home.path / "daemon.json").exists()


KERNEL = """
import time
from jupyter_deploy.client._daemon import connect
connect()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_kernel_style_process_group_signal_leaves_the_daemon_alive(home):
    # Like a Jupyter kernel: the leader of its own process group, which an interrupt
    # (SIGINT) or a restart (SIGKILL) signals as a whole.
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert kernel.stdout.readline().strip() == "ready"
        pid = home.record()["pid"]
        assert os.getpgid(pid) != kernel.pid
        os.killpg(kernel.pid, signal.SIGINT)
        time.sleep(0.3)
        assert _daemon.info().pid == pid
        os.killpg(kernel.pid, signal.SIGKILL)
        kernel.wait(timeout=10)
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(timeout=10)
    assert _daemon.info().pid == pid


def test_status_and_stop(home):
    channel, address, _ = _daemon.connect()
    channel.close()
    pid = home.record()["pid"]

    status = cli("status")
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(None, 1) for line in status.stdout.splitlines())
    assert (lines["address"], lines["pid"], lines["version"]) == (address, str(pid), __version__)
    assert "uptime" in lines

    stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"(pid {pid})" in stopped.stdout
    assert not _daemon._alive(pid)
    assert not (home.path / "daemon.json").exists()

    status = cli("status")
    assert status.returncode == 1 and "no daemon running" in status.stdout
    assert cli("stop").returncode == 1


def test_a_daemon_of_another_version_is_reported(home, monkeypatch):
    _daemon.connect()[0].close()
    monkeypatch.setattr(_daemon, "__version__", "0.0.0-other")
    with pytest.raises(DeployError) as e:
        _daemon.connect()
    message = str(e.value)
    assert f"runs jupyter_deploy {__version__}, this client is 0.0.0-other" in message
    assert "jupyter-deploy stop" in message
    assert _daemon.info().version == __version__  # status and stop still reach it


def test_a_wrong_or_missing_token_is_unauthenticated(home, monkeypatch):
    _daemon.connect()[0].close()
    channel, _, metadata = _daemon.connect(pat="jdp_not-a-token")
    for md, reason in ((metadata, "unknown token"), ([], "missing token")):
        with pytest.raises(grpc.RpcError) as e:
            get_info(channel, md)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert e.value.details().startswith(reason) and "\n" not in e.value.details()
    channel.close()

    monkeypatch.setenv("JUPYTER_DEPLOY_PAT", "jdp_also-wrong")
    with pytest.raises(ControlPlaneError, match="unknown token") as e:
        _daemon.info()
    assert e.value.code == "UNAUTHENTICATED"


def test_tokens_are_stored_as_keyed_digests_and_can_be_revoked(tmp_path):
    from jupyter_deploy.control import _auth
    from jupyter_deploy.control._errors import Unauthenticated
    from jupyter_deploy.control._store import Store

    store = Store(tmp_path / "state.db")
    secret = _auth.server_secret(tmp_path)
    assert _auth.server_secret(tmp_path) == secret and len(secret) == 32
    _auth.ensure_local_user(store, tmp_path, secret)
    local = (tmp_path / "local.token").read_text()
    _auth.ensure_local_user(store, tmp_path, secret)  # a restart keeps the token
    assert (tmp_path / "local.token").read_text() == local
    assert _auth.authenticate(store, secret, local) == "local"

    token_id, token = _auth.create_token(store, secret, "local")
    assert token.startswith("jdp_") and len(token) == 47
    store.close()
    rows = sqlite3.connect(tmp_path / "state.db").execute("SELECT * FROM tokens").fetchall()
    assert not any(token in map(str, row) or local in map(str, row) for row in rows)

    store = Store(tmp_path / "state.db")
    with store.tx() as db:
        db.execute("UPDATE tokens SET revoked_at = 1 WHERE id = ?", (token_id,))
    with pytest.raises(Unauthenticated, match="token revoked"):
        _auth.authenticate(store, secret, token)
    store.close()
