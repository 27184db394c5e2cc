"""A runner whose model needs a package this environment lacks serves it from the model's own environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from jupyter_deploy import RunnerClient


def test_runner_reexecs_in_the_models_environment(tmp_path: Path) -> None:
    from test_environment import build_wheel  # the hand-made wheel: no package index needed

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "runner_tinypkg", "0.2", "VALUE = 'from the venv'\n")
    root = tmp_path / "m"
    (root / "1").mkdir(parents=True)
    (root / "1" / "model.py").write_text('''
import sys
import runner_tinypkg
from jupyter_deploy import ModelClass

class M(ModelClass):
    @ModelClass.method
    def where(self) -> dict:
        return {"value": runner_tinypkg.VALUE, "python": sys.executable}
''')
    (root / "config.yaml").write_text("model:\n  id: m\n")
    (root / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nrunner_tinypkg==0.2\n")
    env = {**os.environ, "JUPYTER_DEPLOY_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(root), "--address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        port = None
        for line in proc.stdout:  # bounded: the process prints a handful of lines, then listens
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = match.group(1)
                break
        assert port, "the runner never said where it listens"
        with RunnerClient(f"127.0.0.1:{port}", timeout=30) as client:
            client.wait_ready(60)
            answer = client.where()
        assert answer["value"] == "from the venv"
        assert answer["python"].startswith(str(tmp_path / "home" / "envs"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_runner_with_run_test_refuses_to_serve_a_model_whose_test_fails(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "1").mkdir(parents=True)
    (root / "1" / "model.py").write_text('''
from jupyter_deploy import ModelClass

class M(ModelClass):
    @ModelClass.method
    def predict(self, x: int) -> int:
        return x + 1

    def test(self):
        assert self.predict(1) == 3, "off by one"
''')
    (root / "config.yaml").write_text("model:\n  id: m\n")
    (root / "requirements.txt").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(root), "--address",
         "127.0.0.1:0", "--run-test"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 4
    assert "test() failed: AssertionError: off by one" in done.stderr
    assert "serving" not in done.stdout
