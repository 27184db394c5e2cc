"""A real control plane daemon for a test module, in a home folder of its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from jupyter_deploy.client import _api

#: Variables that point a client at a daemon or a user: each module starts from none of them.
_ISOLATED = ("JUPYTER_DEPLOY_HOME", "JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT", "JUPYTER_DEPLOY_TLS_CA",
             "JUPYTER_DEPLOY_FAKE_GPUS", "JUPYTER_DEPLOY_ROUTE_TOKEN_TTL")


@contextlib.contextmanager
def isolated_home(tmp_path_factory: pytest.TempPathFactory, name: str = "home",
                  **env: str) -> Iterator[Path]:
    """A fresh JUPYTER_DEPLOY_HOME (plus ``env``) for the block; its daemon and runners die after,
    and the environment is as before."""
    home = tmp_path_factory.mktemp(name)
    old = {k: os.environ.get(k) for k in (*_ISOLATED, *env)}
    for k in _ISOLATED:
        os.environ.pop(k, None)
    os.environ.update(JUPYTER_DEPLOY_HOME=str(home), **env)
    _api._default = None
    try:
        yield home
    finally:
        _api._default = None
        kill_everything(home)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def daemon_pid(home: Path) -> int:
    return json.loads((home / "daemon.json").read_text())["pid"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def until(read, accept, timeout: float, what: str):
    """``read()`` once ``accept`` holds for it (polled, bounded)."""
    box = []

    def check() -> bool:
        box[:] = [read()]
        return bool(accept(box[0]))
    wait_for(check, timeout, what)
    return box[0]


def wait_for_state(client, deployment_id: str, state, timeout: float, what: str = "") -> str:
    """Wait on the daemon's pushed changes until the deployment's state is ``state`` (or, a
    callable, until it says yes to the state); the state. Polls only where the daemon refuses
    another watcher (its watchers are capped)."""
    from jupyter_deploy import ControlPlaneError

    wanted = state if callable(state) else state.__eq__
    try:
        for event in client.watch(["deployment"], [deployment_id], timeout=timeout):
            if event.kind == "deployment" and wanted(event.state):
                return event.state
    except ControlPlaneError as e:
        if e.code != "RESOURCE_EXHAUSTED":
            raise
        def polled() -> str | None:
            now = client.deployment(deployment_id).state
            return now if wanted(now) else None

        return wait_for(polled, timeout, what or str(state))
    raise AssertionError(f"timed out after {timeout} s waiting for {what or state}")


def kill_everything(home: Path) -> None:
    """Stop the daemon and any runner it left (bounded), whatever state the test left them in."""
    try:
        pid = daemon_pid(home)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), 15, "the daemon to stop")
    except (FileNotFoundError, ProcessLookupError, AssertionError, ValueError):
        pass
    out = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True)
    for line in out.stdout.split():
        try:
            os.kill(int(line), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


ECHO_MODEL = '''
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo: " + text
'''


@contextlib.contextmanager
def deployed_echo(tmp_path_factory: pytest.TempPathFactory, name: str, versions: int = 1):
    """A daemon in a home of its own, the model ``echo`` uploaded ``versions`` times (each
    version a little different) and its latest deployed as ``echo`` on local/local; yields
    (client, home)."""
    from conftest import write_model

    from jupyter_deploy import Client

    with isolated_home(tmp_path_factory, name) as home:
        folder = tmp_path_factory.mktemp(f"{name}_echo")
        client = Client()
        for v in range(versions):
            write_model(folder, ECHO_MODEL + f"\n# version {v + 1}\n", model_id="echo")
            client.upload_model(folder)
        client.compute_cluster("local").nodepool("local").create_deployment(
            "echo", worker={"model": {"id": "echo"}}).wait_until_ready(120)
        try:
            yield client, home
        finally:
            client.close()
