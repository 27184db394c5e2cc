"""Runners forked by the runner template (``runner._zygote``), and the fallback to spawning them.

Real daemon, real template, real runners. A replica the template forked has the template's
command line; it must serve, with a clean environment and (where the daemon is root) as its
owner's OS user, be restarted after kill -9 with the exit told, be re-adopted after the
daemon is killed -9, and leave nothing behind. Where the template cannot start a runner,
the local backend spawns a fresh interpreter as before.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_model
from daemon_helpers import alive, daemon_pid, isolated_home, wait_for, wait_for_state
from test_backends import ECHO, HOST, spec_for

from jupyter_deploy import Client
from jupyter_deploy.control._backends import _zygote
from jupyter_deploy.control._backends.base import Health
from jupyter_deploy.control._backends.local import LocalBackend
from jupyter_deploy.control._home import sandboxed

pytestmark = pytest.mark.timeout(240)

CANARY = "canary-" + secrets.token_hex(16)
SECRET = "secret-" + secrets.token_hex(16)

PROBE = '''
import os, sys
from jupyter_deploy import ModelClass


class Probe(ModelClass):
    @ModelClass.method
    def whoami(self) -> dict:
        return {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "sid": os.getsid(0),
                "env": dict(os.environ), "cwd": os.getcwd(), "stdin": os.readlink("/proc/self/fd/0")}
'''

BROKEN = '''
from jupyter_deploy import ModelClass


class Broken(ModelClass):
    def load_model(self):
        raise RuntimeError("the weights are not there")

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _forked(pid: int) -> bool:
    """Whether the process is a child of the runner template (it has the template's command line)."""
    return _zygote.MODULE in _cmdline(pid)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return -1


def _template(home: Path) -> int:
    """The pid of the daemon's runner template (its children have its command line, not its parent)."""
    out = subprocess.run(["pgrep", "-f", f"{_zygote.MODULE} .*--home {home}"], capture_output=True, text=True)
    [pid] = [int(p) for p in out.stdout.split() if _parent(int(p)) == daemon_pid(home)]
    return pid


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    os.environ["ZYGOTE_CANARY"] = CANARY  # what the daemon has and no model may see
    try:
        with isolated_home(tmp_path_factory, "zygote") as home:
            yield home
    finally:
        os.environ.pop("ZYGOTE_CANARY", None)


@pytest.fixture(scope="module")
def probe(home, tmp_path_factory):
    """A deployment of a user of the daemon's (where the daemon is root: runs as an OS user of its own)."""
    _, token = Client().create_user("carol")
    client = Client(pat=token)
    folder = tmp_path_factory.mktemp("probe")
    write_model(folder, PROBE, model_id="probe")
    client.upload_model(folder)
    client.set_secret("probe_key", SECRET)
    deployment = client.compute_cluster("local").nodepool("local").create_deployment(
        "probe", worker={"model": {"id": "probe"}}, secrets=[{"id": "probe_key", "env_var": "PROBE_KEY"}])
    deployment.wait_until_ready(120)
    return client, deployment


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether the process's writable memory holds ``needle`` (PermissionError where it cannot be read)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def _ready_pid(deployment) -> int:
    [replica] = [r for r in deployment.status["replicas"] if r["state"] == "READY"]
    return replica["pid"]


def test_a_forked_runner_serves_with_a_clean_environment_as_its_owner(home, probe):
    client, deployment = probe
    me = client.model("probe").whoami()
    assert me["pid"] == _ready_pid(deployment)
    assert _forked(me["pid"]), _cmdline(me["pid"])
    assert me["sid"] == me["pid"]  # its own session: a kernel's or the daemon's signals never reach it
    assert me["stdin"] == "/dev/null"
    env = me["env"]
    assert CANARY not in repr(env) and "ZYGOTE_CANARY" not in env
    assert "JUPYTER_DEPLOY_HOME" not in env and "JUPYTER_DEPLOY_VERIFY_KEY" not in env
    assert env["DEPLOYMENT_ID"] == "probe" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PROBE_KEY"] == SECRET  # its own secret, which went to it alone:
    # the template holds only the daemon's inherited variables, and none of a deployment's (every
    # runner it forks later gets a copy of its memory).
    template = _template(home)
    assert CANARY.encode() not in Path(f"/proc/{template}/environ").read_bytes()
    try:
        assert not _memory_holds(template, SECRET.encode())
        assert _memory_holds(me["pid"], SECRET.encode())  # (the search finds it where it is)
    except PermissionError:
        pass  # not root: another process's memory is out of reach
    # A pid file names it for a daemon that restarts (its command line cannot).
    pid, started, port_file = _zygote.read_pid_file(next((home / "run").glob("*.pid")))
    assert pid == me["pid"] and started == _zygote.process_start_time(pid) and port_file.name.endswith(".port")
    if sandboxed():  # root: its owner's OS user, its own home as working folder
        assert me["uid"] != 0 and me["gid"] != 0 and me["uid"] == os.stat(me["cwd"]).st_uid
        assert me["cwd"] == env["HOME"]


def test_a_forked_runner_killed_is_restarted_and_its_exit_told(home, probe):
    client, deployment = probe
    pid = _ready_pid(deployment)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (r := [x for x in deployment.status["replicas"] if x["state"] == "READY"])
             and r[0]["pid"] != pid, 60, "a new replica")
    new = _ready_pid(deployment)
    assert _forked(new) and client.model("probe").whoami()["pid"] == new
    log = (home / "logs" / "daemon.log").read_text()
    assert "signal SIGKILL" in log  # the template reaped it and told the daemon how it ended


def test_a_model_that_fails_to_load_fails_its_deployment_with_the_error(home, tmp_path_factory):
    client = Client()
    folder = tmp_path_factory.mktemp("broken")
    write_model(folder, BROKEN, model_id="broken")
    client.upload_model(folder)
    deployment = client.compute_cluster("local").nodepool("local").create_deployment(
        "broken", worker={"model": {"id": "broken"}})
    wait_for_state(client, "broken", "FAILED", 60)
    status = deployment.status
    # failure.json and the exit code: the model's own error, told at once (not retried as a crash)
    assert "the weights are not there" in status["reason"] and "crashed" not in status["reason"], status
    client.compute_cluster("local").nodepool("local").delete_deployments(["broken"])


def test_a_daemon_killed_re_adopts_forked_runners_and_leaves_nothing_behind(home, probe):
    client, deployment = probe
    pid = _ready_pid(deployment)
    template = _template(home)
    old = daemon_pid(home)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not alive(old), 10, "the daemon to die")
    wait_for(lambda: not alive(template), 10, "the template to end with it")
    assert alive(pid)  # its runners serve on
    Client()  # a new daemon over the same home
    assert client.model("probe").whoami()["pid"] == pid  # the same runner: re-adopted, not restarted
    assert _template(home) != template
    client.compute_cluster("local").nodepool("local").delete_deployments(["probe"])
    wait_for(lambda: not alive(pid), 30, "the re-adopted runner to stop")
    wait_for(lambda: not list((home / "run").glob("*.pid")), 30, "its pid file to go")
    new = daemon_pid(home)
    os.kill(new, signal.SIGTERM)
    wait_for(lambda: not alive(new), 30, "the daemon to stop")

    def ours() -> list[str]:
        out = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
        return [_cmdline(int(p)) for p in out if int(p) != os.getpid() and _cmdline(int(p))]

    wait_for(lambda: not ours(), 10, "every process of this home to end")


# ---------------------------------------------------------------- the backend, and its fallback

def _serves(backend: LocalBackend, handle) -> None:
    wait_for(lambda: backend.health(handle) is Health.SERVING, 60, "the runner to serve")


def test_the_backend_forks_when_it_can_and_reports_exit_codes(tmp_path):
    home = tmp_path / "home"
    backend = LocalBackend(home, HOST)
    handle = backend.start(spec_for(home, write_model(tmp_path / "v1", ECHO, "echo"), "0000000000b1"))
    assert handle.popen is None and handle.start_time and _forked(handle.pid)
    _serves(backend, handle)
    backend.drain(handle, grace=10)  # SIGTERM: it drains and exits 0
    wait_for(lambda: backend.poll(handle) is not None, 30, "the runner to exit")
    assert backend.poll(handle) == "exit code 0"
    backend.stop(handle)
    assert not (home / "run" / "0000000000b1.pid").exists() and backend.list_running() == []


@pytest.mark.parametrize("why", ["switched off", "template killed", "another interpreter"])
def test_the_backend_spawns_runners_where_the_template_cannot(tmp_path, monkeypatch, why):
    home = tmp_path / "home"
    if why == "switched off":
        monkeypatch.setenv(_zygote.SWITCH_ENV, "off")
    backend = LocalBackend(home, HOST)
    spec = spec_for(home, write_model(tmp_path / "v1", ECHO, "echo"), "0000000000c1")
    if why == "template killed":
        backend._zygote.popen.kill()
        wait_for(lambda: backend._zygote.gone, 10, "the backend to see the template gone")
    if why == "another interpreter":  # a virtual environment's: its base interpreter, other packages
        venv = tmp_path / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(sys.executable)
        (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n"
                                         "include-system-site-packages = true\n")
        assert not _zygote.runs(str(venv / "bin" / "python")) and _zygote.runs(sys.executable)
        spec = spec.__class__(**{**spec.__dict__, "python": str(venv / "bin" / "python")})
    handle = backend.start(spec)
    try:
        assert handle.popen is not None and not handle.start_time
        _serves(backend, handle)
        assert "jupyter_deploy.runner" in _cmdline(handle.pid) and not _forked(handle.pid)
    finally:
        backend.stop(handle)
    assert backend.poll(handle) == "signal SIGKILL"


def test_a_template_that_ended_is_started_again(tmp_path, monkeypatch):
    home = tmp_path / "home"
    backend = LocalBackend(home, HOST)
    backend._zygote.popen.kill()
    wait_for(lambda: backend._zygote.gone, 10, "the backend to see the template gone")
    monkeypatch.setattr(backend, "_zygote_launched", time.monotonic() - 3600)
    first = backend.start(spec_for(home, write_model(tmp_path / "v1", ECHO, "echo"), "0000000000d1"))
    second = backend.start(spec_for(home, tmp_path / "v1", "0000000000d2"))
    try:
        assert first.popen is not None  # spawned while the new template imports
        assert second.popen is None and _forked(second.pid)  # forked by the new one
        _serves(backend, second)
    finally:
        backend.stop(first)
        backend.stop(second)
