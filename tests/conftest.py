"""Shared fixtures: a private JUPYTER_DEPLOY_HOME, model folders, real runner processes."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

_LISTENING = re.compile(r"jupyter_deploy runner: listening on (\S+):(\d+)")


@pytest.fixture(autouse=True, scope="session")
def jupyter_deploy_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every runner it starts) keeps its state in a temporary home."""
    home = tmp_path_factory.mktemp("jupyter_deploy_home")
    old = os.environ.get("JUPYTER_DEPLOY_HOME")
    os.environ["JUPYTER_DEPLOY_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("JUPYTER_DEPLOY_HOME", None)
    else:
        os.environ["JUPYTER_DEPLOY_HOME"] = old


def write_model(root: Path, source: str, model_id: str = "test") -> Path:
    """A model folder under ``root``: config.yaml, an empty requirements.txt, 1/model.py."""
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"model:\n  id: {model_id}\n")
    (root / "requirements.txt").write_text("")
    (root / "1" / "model.py").write_text(textwrap.dedent(source))
    return root


def runner_command(model_dir: Path, *args: str, address: str = "127.0.0.1:0") -> list[str]:
    return [sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(model_dir),
            "--address", address, *args]


class RunnerProcess:
    """One ``python -m jupyter_deploy.runner`` process, in its own process group."""

    def __init__(self, model_dir: Path, *args: str, start_timeout: float = 60.0):
        self.model_dir = model_dir
        self.stderr_path = model_dir / "runner.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(runner_command(model_dir, *args), stdout=subprocess.PIPE,
                                     stderr=self._stderr, start_new_session=True, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_listening(start_timeout)
        self.address = f"127.0.0.1:{self.port}"
        self._clients: list = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _wait_listening(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"runner did not listen within {timeout} s: {self.stderr()}") from None
            if line is None:
                self.stop()
                raise RuntimeError(f"runner exited with {self.proc.returncode}: {self.stderr()}")
            m = _LISTENING.search(line)
            if m:
                return int(m.group(2))

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def client(self, **kwargs):
        from jupyter_deploy import RunnerClient

        c = RunnerClient(self.address, connect_timeout=30, **kwargs)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self._stderr.close()


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """``start_runner(source, *args)``: a runner for ``source``, killed after the test."""
    started: list[RunnerProcess] = []

    def start(source: str, *args: str, name: str = "model") -> RunnerProcess:
        r = RunnerProcess(write_model(tmp_path / name, source), *args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def module_runner(tmp_path_factory: pytest.TempPathFactory, source: str,
                  *args: str) -> Iterator[RunnerProcess]:
    """Body of a module-scoped fixture: one serving runner shared by a test module."""
    r = RunnerProcess(write_model(tmp_path_factory.mktemp("model"), source), *args)
    try:
        client = r.client()
        client.wait_ready(timeout=60)
        yield r
    finally:
        r.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
