"""The jupyter-deploy command line, run as users run it: a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_deploy.cli import TEMPLATES


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_deploy", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def model_folder(root: Path, source: str, requirements: str = "") -> Path:
    (root / "1").mkdir(parents=True)
    (root / "1" / "model.py").write_text(source)
    (root / "config.yaml").write_text("model:\n  id: m\n")
    (root / "requirements.txt").write_text(requirements)
    return root


HEADER = "from typing import Iterator\nfrom jupyter_deploy import ModelClass\n\n"


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_scaffolds_a_model_that_passes_run_locally(tmp_path: Path, template: str) -> None:
    target = tmp_path / f"my {template} model"
    made = cli("init", str(target), "--template", template)
    assert made.returncode == 0, made.stderr
    assert (target / "1" / "model.py").is_file() and (target / "requirements.txt").is_file()
    assert "id: my-" in (target / "config.yaml").read_text()  # the space became a dash
    ran = cli("run-locally", str(target))
    assert ran.returncode == 0, ran.stderr
    assert "passed" in ran.stdout
    assert "method" in ran.stdout and "unary" in ran.stdout or "server-stream" in ran.stdout


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    made = cli("init", str(tmp_path))
    assert made.returncode == 1
    assert "not empty" in made.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_run_locally_prints_methods_timings_and_calls_made_by_test(tmp_path: Path) -> None:
    root = model_folder(tmp_path / "m", HEADER + '''
class M(ModelClass):
    @ModelClass.method
    def shout(self, text: str) -> str:
        return text.upper()

    @ModelClass.method
    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    def test(self):
        assert self.shout("a") == "A"
        assert self.shout("b") == "B"
        assert list(self.count(3)) == [0, 1, 2]
''')
    ran = cli("run-locally", str(root))
    assert ran.returncode == 0, ran.stderr
    rows = {line.split()[0]: line.split() for line in ran.stdout.splitlines() if line.strip()}
    assert rows["shout"][1] == "unary" and "2" in rows["shout"]
    assert rows["count"][1] == "server-stream" and "1" in rows["count"]
    assert "test()" in ran.stdout and "passed" in ran.stdout


FAILURES = {
    "syntax": (HEADER + "class M(ModelClass):\n    def predict(self x: str) -> str:\n        pass\n",
               ["syntax error", "model.py, line 5"]),
    "missing package": (HEADER + "import no_such_package_xyz\n",
                        ["no module named 'no_such_package_xyz'", "requirements.txt", "line 4"]),
    "load failure": (HEADER + '''
class M(ModelClass):
    def load_model(self):
        raise RuntimeError("weights not found")

    @ModelClass.method
    def predict(self, x: str) -> str:
        return x
''', ["load_model() failed", "RuntimeError: weights not found", "model.py"]),
    "test failure": (HEADER + '''
class M(ModelClass):
    @ModelClass.method
    def predict(self, x: str) -> str:
        return x + "!"

    def test(self):
        assert self.predict("a") == "a", "predict adds a bang"
''', ["test() failed", "AssertionError: predict adds a bang", "line 11"]),
    "no method": (HEADER + "class M(ModelClass):\n    pass\n", ["has no @ModelClass.method"]),
    "untyped": (HEADER + '''
class M(ModelClass):
    @ModelClass.method
    def predict(self, x) -> str:
        return x
''', ["parameter 'x': no type annotation"]),
}


@pytest.mark.parametrize("case", FAILURES)
def test_run_locally_failures_are_short_and_readable(tmp_path: Path, case: str) -> None:
    source, expected = FAILURES[case]
    ran = cli("run-locally", str(model_folder(tmp_path / "m", source)))
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: ")
    for text in expected:
        assert text in ran.stderr, ran.stderr
    assert "jupyter_deploy/cli.py" not in ran.stderr  # none of our own stack
    assert len(ran.stderr.splitlines()) < 12


def test_run_locally_reports_a_bad_config_with_every_problem(tmp_path: Path) -> None:
    root = model_folder(tmp_path / "m", HEADER + '''
class M(ModelClass):
    @ModelClass.method
    def predict(self, x: str) -> str:
        return x
''')
    (root / "config.yaml").write_text("model:\n  id: 'bad id'\n  colour: red\n")
    ran = cli("run-locally", str(root))
    assert ran.returncode == 1
    assert "model.id" in ran.stderr and "model.colour" in ran.stderr


def test_run_locally_on_a_missing_folder(tmp_path: Path) -> None:
    ran = cli("run-locally", str(tmp_path / "nope"))
    assert ran.returncode == 1
    assert "no such model folder" in ran.stderr


def test_run_locally_runs_a_model_in_its_own_environment(tmp_path: Path, monkeypatch) -> None:
    from test_environment import build_wheel  # the hand-made wheel: no package index needed

    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path / "home"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "cli_tinypkg", "0.1", "VALUE = 42\n")
    root = model_folder(tmp_path / "m", HEADER + '''
import cli_tinypkg

class M(ModelClass):
    @ModelClass.method
    def value(self) -> int:
        return cli_tinypkg.VALUE

    def test(self):
        print("value ->", self.value())
''', requirements=f"--no-index\n--find-links {wheels}\ncli_tinypkg==0.1\n")
    ran = cli("run-locally", str(root))
    assert ran.returncode == 0, ran.stderr
    assert "value -> 42" in ran.stdout
    assert list((tmp_path / "home" / "envs").glob("*/.ready"))
    with pytest.raises(ImportError):  # this interpreter was left alone
        __import__("cli_tinypkg")


def test_a_runner_for_a_text_model_imports_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from jupyter_deploy.model import ModelHost\n"
        "from jupyter_deploy.runner._service import make_server\n"
        "from jupyter_deploy import RunnerClient\n"
        f"host = ModelHost({str(Path(__file__).parent.parent / 'notebooks/models/echo')!r})\n"
        "host.load()\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'PIL') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_run_locally_notes_the_sections_it_ignores(tmp_path: Path) -> None:
    root = model_folder(tmp_path / "m", HEADER + '''
class M(ModelClass):
    @ModelClass.method
    def predict(self, x: str) -> str:
        return x
''')
    (root / "config.yaml").write_text("model:\n  id: m\nbuild_info:\n  python_version: '3.11'\n")
    ran = cli("run-locally", str(root))
    assert ran.returncode == 0, ran.stderr
    assert "note:" in ran.stderr and "build_info" in ran.stderr
