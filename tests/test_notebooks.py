"""The example notebooks, executed headless with a real kernel (nbclient), checked by their outputs.

Every notebook runs in a temporary copy of itself against the daemon of this
module's own JUPYTER_DEPLOY_HOME (the kernel inherits the environment), deploys
its models to the local nodepool and deletes them at the end. The assertions
read what the saved notebook records, as a reader of a CI artefact would.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from daemon_helpers import isolated_home, kill_everything
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart", "image_classifier", "streaming_text", "video_frames", "sklearn_to_endpoint")
#: Each notebook must run headless well under this (2 cores).
BUDGET_S = 60


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "notebooks_home") as home:
        yield home


def execute(name: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run a copy of ``notebooks/NAME.ipynb`` in ``tmp_path``; the executed notebook and its time."""
    copy = tmp_path / f"{name}.ipynb"
    shutil.copyfile(NOTEBOOKS / f"{name}.ipynb", copy)
    nb = nbformat.read(copy, as_version=4)
    started = time.monotonic()
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - started
    nbformat.write(nb, copy)  # left for a look after a failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert elapsed < BUDGET_S, f"{name} took {elapsed:.1f} s"
    return nb, elapsed


def cell(nb, starts: str):
    """The code cell whose source starts with ``starts``."""
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(starts)]
    assert len(found) == 1, f"{len(found)} cells start with {starts!r}"
    return found[0]


def plain(c) -> list[str]:
    """A cell's text/plain results (execute_result and display_data), in order."""
    return [o.data["text/plain"] for o in c.outputs
            if o.output_type in ("execute_result", "display_data") and "text/plain" in o.data]


def stdout(c) -> str:
    return "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def png_size(c) -> tuple[int, int]:
    """The size of the last image/png a cell shows."""
    from PIL import Image

    pngs = [o.data["image/png"] for o in c.outputs
            if o.output_type in ("execute_result", "display_data") and "image/png" in o.data]
    assert pngs, f"no image/png in {c.source.splitlines()[0]!r}"
    return Image.open(io.BytesIO(base64.b64decode(pngs[-1]))).size


# ---------------------------------------------------------------- as saved


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_saved_clean(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown"
    assert nb.metadata.kernelspec.name == "python3"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, c.source.splitlines()[0]


def test_deployment_ids_do_not_clash():
    ids = []
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        for c in nb.cells:
            m = re.match(r"%%?deploy\s+(\S+)", c.source)
            if m:
                ids.append(re.sub(r"[^A-Za-z0-9]", "", m.group(1)))
    assert len(ids) == len(NAMES) and len(set(ids)) == len(ids), ids


# ---------------------------------------------------------------- executed


def test_quickstart(home, tmp_path):
    nb, _ = execute("quickstart", tmp_path)
    deployed = " ".join(plain(cell(nb, "%%deploy quickstart")))
    assert "deployment quickstart RUNNING on local/local" in deployed
    assert plain(cell(nb, "%predict quickstart hello")) == ["'echo: hello'"]
    assert plain(cell(nb, "x = %predict quickstart")) == ["'ECHO: JUPYTER NOTEBOOKS'"]
    # The stream's display, updated in place, ends as the complete text, shown once.
    assert plain(cell(nb, '%stream quickstart "a b c"')) == ["a b c"]
    api = cell(nb, "from jupyter_deploy import Client")
    assert stdout(api) == "echo: from Python\n['one', ' two', ' three']\n"
    table = [o.data["text/html"] for o in api.outputs if "text/html" in o.get("data", {})]
    assert len(table) == 1 and "<table" in table[0]
    assert "RUNNING" in table[0] and "local/default/models/quickstart" in table[0]
    logs = stdout(cell(nb, 'deployment = Deployment("quickstart")'))
    assert logs.startswith("RUNNING\n") and "jupyter_deploy runner: serving" in logs
    assert stdout(cell(nb, "deployment.delete()")) == "deployments left: []\n"


def test_image_classifier(home, tmp_path):
    nb, _ = execute("image_classifier", tmp_path)
    assert png_size(cell(nb, "from pathlib import Path")) == (240, 160)
    assert (tmp_path / "scene.png").is_file()
    tops = dict(re.findall(r"top concept by (\w+): (\w+)", stdout(cell(nb, "def top("))))
    assert tops == {"file": "blue", "bytes": "blue", "url": "blue"}
    rendered = cell(nb, "from jupyter_deploy.notebook.render import render")
    (result,) = [o for o in rendered.outputs if o.output_type == "execute_result"]
    assert "jd-concepts" in result.data["text/html"] and "width:" in result.data["text/html"]
    rows = result.data["text/plain"].splitlines()
    assert rows[0].split()[0] == "blue" and len(rows) == 6  # sorted, every colour
    values = [float(r.split()[1]) for r in rows]
    assert values == sorted(values, reverse=True) and abs(sum(values) - 1) < 0.01


def test_streaming_text(home, tmp_path):
    nb, _ = execute("streaming_text", tmp_path)
    assert "trained in" in stdout(cell(nb, "import time"))
    (streamed,) = plain(cell(nb, "%stream char-bigram"))
    assert len(streamed) == 300  # the final display holds every character

    cancelled = stdout(cell(nb, "from jupyter_deploy import Model"))
    assert "received 150 of 300 characters" in cancelled
    received = ast.literal_eval(re.search(r"^received: (.*)$", cancelled, re.MULTILINE).group(1))
    assert received.startswith("The model ") and len(received) == len("The model ") + 150

    marker = stdout(cell(nb, "deadline = "))
    assert "marker file exists: True" in marker
    closed_after = int(re.search(r"generator closed after (\d+) of 300 characters", marker).group(1))
    assert 150 <= closed_after < 300  # the model's finally ran on the server, mid-stream
    assert (tmp_path / "generator_closed.txt").is_file()

    (continuation,) = plain(cell(nb, "continuation = %stream char-bigram $received"))
    assert len(continuation) == 120
    summary = stdout(cell(nb, 'print(f"resumed text'))
    assert "resumed text starts with what was received: True" in summary
    resumed = ast.literal_eval(re.search(r"^resumed: (.*)$", summary, re.MULTILINE).group(1))
    assert resumed == received + continuation


def test_video_frames(home, tmp_path):
    nb, _ = execute("video_frames", tmp_path)
    streamed = cell(nb, "annotated = %stream frame-annotator --input frames")
    # The in-place display ends as the last frame, a plain PNG, with the frame count.
    assert png_size(streamed) == (192, 128)
    assert any(p.startswith("<frame 48, 192x128") for p in plain(streamed))
    assert "48 annotated frames back, each 192x128" in stdout(streamed)
    view = cell(nb, "from jupyter_deploy import Model")
    assert png_size(view) == (192, 128) and stdout(view).startswith("24 frames · ")
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert last.source.strip() == "annotated[-1].image"
    assert png_size(last) == (192, 128)
    assert [o.output_type for o in last.outputs] == ["execute_result"]


def test_sklearn_to_endpoint(home, tmp_path):
    pytest.importorskip("sklearn")
    nb, _ = execute("sklearn_to_endpoint", tmp_path)
    assert "test accuracy: " in stdout(cell(nb, "from sklearn.datasets import load_wine"))
    packaged = stdout(cell(nb, "from jupyter_deploy import package"))
    assert "'1/checkpoint/model.skops'" in packaged and "def predict(self, X: pd.DataFrame) -> np.ndarray:" in packaged
    assert "deployment wine RUNNING on local/local" in " ".join(plain(cell(nb, "%deploy wine")))
    (shown,) = plain(cell(nb, "%predict wine"))
    assert shown.startswith("array([")
    served = stdout(cell(nb, "import numpy as np"))
    assert "same predictions as the notebook: True" in served
    refused = stdout(cell(nb, "from jupyter_deploy import InputError"))
    assert refused.startswith("InputError: X: missing column 'alcohol'")
    assert stdout(cell(nb, "from jupyter_deploy import Deployment")) == "deleted\n"


# ---------------------------------------------------------------- jupyter-deploy demo


def _command() -> list[str]:
    script = Path(sys.executable).parent / "jupyter-deploy"
    if script.is_file():
        return [str(script), "demo"]
    found = shutil.which("jupyter-deploy")
    return [found, "demo"] if found else [sys.executable, "-m", "jupyter_deploy", "demo"]


def test_demo_prints_the_quickstart_transcript(home, tmp_path_factory):
    demo_home = tmp_path_factory.mktemp("demo_home")
    env = {**os.environ, "JUPYTER_DEPLOY_HOME": str(demo_home)}
    try:
        proc = subprocess.run(_command(), check=False, cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=150)
    finally:
        kill_everything(demo_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    i = lines.index("[3] %predict quickstart hello")
    assert lines[i + 1].strip() == "'echo: hello'"
    assert "    a b c" in lines and "deployments left: []" in out
    assert re.search(r"^done: \d+ cells in [\d.]+ s$", out, re.MULTILINE)


def test_demo_outside_a_checkout_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    from jupyter_deploy.demo import main

    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert "run `jupyter-deploy demo` from a checkout" in capsys.readouterr().err


def test_demo_stops_at_a_failing_cell_with_a_short_message(tmp_path, capsys):
    from jupyter_deploy.demo import main

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('before')"), nbformat.v4.new_code_cell("1 / 0"),
                nbformat.v4.new_code_cell("print('never')")]
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    assert main(["--notebook", str(path), "--timeout", "60"]) == 1
    out, err = capsys.readouterr()
    assert "[1] print('before')\n    before" in out and "never" not in out
    assert "ZeroDivisionError" in out
    (message,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert message == "error: cell 2 (1 / 0) failed: ZeroDivisionError: division by zero"
