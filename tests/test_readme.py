"""The README opens with the two commands, and CI runs the test command verbatim."""

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_a_main_and_a_test_command() -> None:
    main, tests = readme_commands()
    assert "jupyter lab" in main and "notebooks/quickstart.ipynb" in main
    assert "pytest" in tests


def test_ci_runs_the_test_command_verbatim_and_the_main_job_headless() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    _, tests = readme_commands()
    assert tests in lines, f".ci/run does not run the README test command {tests!r}"
    assert "pip install . && jupyter-deploy demo" in lines


@pytest.mark.timeout(120)
def test_the_main_command_opens_the_quickstart_with_the_repository_as_the_root(tmp_path) -> None:
    main, _ = readme_commands()
    lab = shlex.split(main.split("&&")[-1])
    assert lab[:2] == ["jupyter", "lab"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(8)
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(runtime), IPYTHONDIR=str(tmp_path / "ipython"))
    # As the README runs it (from the repository root), minus the browser.
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", *lab[2:], "--no-browser", "--ip", "127.0.0.1",
                             f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=2) as r:
                    names = {c["name"] for c in json.load(r)["content"]}
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "jupyter lab did not come up"
                time.sleep(0.3)
        # The repository's files are in reach, not only notebooks/.
        assert {"README.md", "notebooks", "jupyter_deploy", "pyproject.toml"} <= names
        [opener] = runtime.glob("jpserver-file-to-run-*-open.html")
        assert f"/lab/tree/notebooks/quickstart.ipynb?token={token}" in opener.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
