"""The daemon off loopback: refused without TLS, served with it (a self-signed certificate made here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from daemon_helpers import kill_everything

from jupyter_deploy import Client, DeployError, _wire
from jupyter_deploy.client import _api, _daemon
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.proto import control_pb2_grpc

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(*args: str, home: Path) -> list[str]:
    return [sys.executable, "-m", "jupyter_deploy.control", "serve", "--home", str(home), *args]


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("certs")
    cert, key = _certificate(folder, "server")
    other, _ = _certificate(folder, "other")
    return {"cert": cert, "key": key, "other": other}


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory, certs, request):
    """A daemon on 0.0.0.0:PORT serving TLS, in its own session; ``(home, port)``."""
    home = tmp_path_factory.mktemp("tls_home")
    port = _free_port()
    log = open(home / "serve.log", "wb")  # noqa: SIM115 (closed by the finalizer)
    proc = subprocess.Popen(_serve("--address", f"0.0.0.0:{port}", "--tls-cert", str(certs["cert"]),
                                   "--tls-key", str(certs["key"]), home=home),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        kill_everything(home)

    request.addfinalizer(stop)
    deadline = time.monotonic() + 60
    while not (home / "daemon.json").exists():
        assert proc.poll() is None, (home / "serve.log").read_text()
        assert time.monotonic() < deadline, "the TLS daemon did not start"
        time.sleep(0.05)
    return home, port


@pytest.fixture
def tls_env(tls_daemon, certs, monkeypatch):
    home, _ = tls_daemon
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(home))
    monkeypatch.setenv("JUPYTER_DEPLOY_TLS_CA", str(certs["cert"]))
    monkeypatch.delenv("JUPYTER_DEPLOY_ADDRESS", raising=False)
    monkeypatch.delenv("JUPYTER_DEPLOY_PAT", raising=False)
    monkeypatch.setattr(_api, "_default", None)
    return tls_daemon


@pytest.mark.parametrize("args", [
    ["--address", "0.0.0.0:0"],
    ["--address", "0.0.0.0:0", "--tls-cert", "cert.pem"],
    ["--address", "0.0.0.0:0", "--tls-key", "key.pem"],
])
def test_a_non_loopback_address_needs_tls_and_says_so(tmp_path, args):
    refused = subprocess.run(_serve(*args, home=tmp_path / "home"), capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tls-cert" in lines[0] and "--tls-key" in lines[0], refused.stderr
    assert not (tmp_path / "home" / "daemon.json").exists()


def test_the_cli_serve_refuses_too(tmp_path):
    env = {**os.environ, "JUPYTER_DEPLOY_HOME": str(tmp_path / "home")}
    refused = subprocess.run([sys.executable, "-m", "jupyter_deploy", "serve", "--address", "0.0.0.0:0"],
                             capture_output=True, text=True, timeout=60, env=env, check=False)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "requires --tls-cert FILE and --tls-key FILE" in refused.stderr


def test_unreadable_certificate_files_are_one_line(tmp_path, certs):
    refused = subprocess.run(_serve("--address", "0.0.0.0:0", "--tls-cert", str(tmp_path / "missing.pem"),
                                    "--tls-key", str(certs["key"]), home=tmp_path / "home"),
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "cannot read --tls-cert" in refused.stderr


def test_a_tls_client_talks_to_it(tls_env):
    home, port = tls_env
    record = json.loads((home / "daemon.json").read_text())
    assert record["tls"] is True and record["address"] == f"127.0.0.1:{port}"
    client = Client(address=f"127.0.0.1:{port}", autostart=False)
    assert client.user_id == "local"
    assert client.call("GetInfo", cpb.InfoRequest()).address == f"0.0.0.0:{port}"
    client.close()
    client = Client(address=f"localhost:{port}", autostart=False)  # the other name in the certificate
    assert client.user_id == "local"
    client.close()
    discovered = Client(autostart=False)  # the discovery file says TLS
    assert discovered.address == f"127.0.0.1:{port}" and discovered.user_id == "local"
    discovered.close()


def test_a_plain_text_client_cannot_talk_to_it(tls_env, monkeypatch):
    home, port = tls_env
    token = (home / "local.token").read_text().strip()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as e:
        control_pb2_grpc.ControlPlaneStub(channel).GetInfo(
            cpb.InfoRequest(), timeout=5,
            metadata=[(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)])
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    monkeypatch.delenv("JUPYTER_DEPLOY_TLS_CA")
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(home.parent / "elsewhere"))
    with pytest.raises(_daemon.DaemonNotRunning):
        Client(address=f"127.0.0.1:{port}", autostart=False)


def test_a_client_that_does_not_trust_the_certificate_cannot_connect(tls_env, certs, monkeypatch):
    _, port = tls_env
    monkeypatch.setenv("JUPYTER_DEPLOY_TLS_CA", str(certs["other"]))
    with pytest.raises(DeployError):
        Client(address=f"127.0.0.1:{port}", autostart=False)
    monkeypatch.setenv("JUPYTER_DEPLOY_TLS_CA", str(certs["other"].parent / "no-such-ca.pem"))
    with pytest.raises(DeployError, match="cannot read JUPYTER_DEPLOY_TLS_CA"):
        Client(address=f"127.0.0.1:{port}", autostart=False)


def test_no_daemon_is_started_for_a_tls_address(tmp_path, monkeypatch, certs):
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUPYTER_DEPLOY_TLS_CA", str(certs["cert"]))
    with pytest.raises(DeployError, match="none is started automatically"):
        _daemon.connect(address=f"127.0.0.1:{_free_port()}")
    assert not (tmp_path / "home" / "daemon.json").exists()


def test_stop_works_over_tls(tls_env):
    home, _ = tls_env
    stopped = _daemon.stop()
    assert stopped.user_id == "local" and not (home / "daemon.json").exists()
