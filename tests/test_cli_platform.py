"""The platform sub-commands of jupyter-deploy, run as a user runs them: fresh processes, a real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from daemon_helpers import alive, daemon_pid, kill_everything, wait_for

pytestmark = pytest.mark.timeout(180)

Cli = Callable[..., subprocess.CompletedProcess]

ECHO = '''
from typing import Iterator
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return f"v1:{text}"

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{text}{i}"
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("cli_home")
    yield home
    subprocess.run([sys.executable, "-m", "jupyter_deploy", "stop"], env=_env(home), capture_output=True,
                   timeout=60)
    kill_everything(home)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_DEPLOY_ADDRESS"}
    env["JUPYTER_DEPLOY_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def cli(home: Path) -> Cli:
    env = _env(home)

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jupyter_deploy", *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=cwd)
    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """A failed command: exit 1, nothing on stdout, a short `error:` message and none of our stack."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert len(lines) < 6 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def rows(table: str) -> dict[str, dict[str, str]]:
    """A printed table as {first column: {column: cell}}; columns are aligned under the header's names."""
    header, *body = table.rstrip("\n").splitlines()
    starts = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)]
    ends = [start for start, _ in starts[1:]] + [None]
    parsed = [{name: line[start:end].strip() for (start, name), end in zip(starts, ends)} for line in body]
    return {row[starts[0][1]]: row for row in parsed}


@pytest.fixture(scope="module")
def echo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("echo")
    (root / "1").mkdir()
    (root / "1" / "model.py").write_text(ECHO)
    (root / "config.yaml").write_text("model:\n  id: echo\n")
    (root / "requirements.txt").write_text("")
    return root


@pytest.fixture(scope="module")
def uploaded(cli: Cli, echo_dir: Path) -> str:
    """The first upload's output; the first CLI call of the module, so it also starts the daemon."""
    return ok(cli("upload", str(echo_dir)))


@pytest.fixture(scope="module")
def deployed(cli: Cli, uploaded: str) -> str:
    return ok(cli("deployment", "create", "echo1", "--model", "echo", "--wait"))


def test_upload_prints_the_version_and_says_when_nothing_new_was_stored(cli, uploaded, echo_dir, home):
    m = re.fullmatch(r"uploaded echo version 1 \(([0-9a-f]{32})\)\n", uploaded)
    assert m, uploaded
    assert (home / "daemon.json").is_file()  # the first call started the daemon
    again = ok(cli("upload", str(echo_dir)))
    assert again.startswith(f"uploaded echo version 1 ({m.group(1)})")
    assert "nothing new stored" in again


def test_model_list_get_and_versions(cli, uploaded):
    listed = rows(ok(cli("model", "list")))
    assert listed["echo"]["latest"] == "1" and listed["echo"]["user_id"] == "local"
    got = ok(cli("model", "get", "echo"))
    assert "local/default/models/echo" in got.splitlines()[0]
    assert "  predict(text: str) -> str  [unary]" in got
    assert "  generate(text: str, n: int = 3) -> Iterator[str]  [server-stream]" in got
    version_id = re.search(r"\(([0-9a-f]{32})\)", uploaded).group(1)
    versions = rows(ok(cli("model", "versions", "local/default/models/echo")))
    assert list(versions) == [version_id] and versions[version_id]["number"] == "1"


def test_clusters_and_nodepools_from_yaml_files(cli, tmp_path):
    (tmp_path / "cluster.yaml").write_text("cloud_provider: local\nregion: here\n")
    assert ok(cli("cluster", "create", "other", "--config", str(tmp_path / "cluster.yaml"))).strip() == \
        "created compute cluster other"
    clusters = rows(ok(cli("cluster", "list")))
    assert set(clusters) == {"local", "other"} and clusters["other"]["region"] == "here"

    (tmp_path / "nodepool.yaml").write_text("nodepool:\n  description: small\n  instance_type:\n    cpus: 1\n")
    assert "created nodepool np1 in other" in ok(cli("nodepool", "create", "np1", "--cluster", "other",
                                                     "--config", str(tmp_path / "nodepool.yaml")))
    assert list(rows(ok(cli("nodepool", "list", "--cluster", "other")))) == ["np1"]
    assert '"cpus": 1.0' in ok(cli("nodepool", "get", "np1", "--cluster", "other"))
    assert list(rows(ok(cli("nodepool", "list")))) == ["local"]  # --cluster defaults to local

    assert "still has nodepools (np1)" in one_line_error(cli("cluster", "delete", "other"))
    ok(cli("nodepool", "delete", "np1", "--cluster", "other"))
    ok(cli("cluster", "delete", "other"))
    assert set(rows(ok(cli("cluster", "list")))) == {"local"}


def test_a_cluster_with_nodepools_is_not_deleted(cli):
    line = one_line_error(cli("cluster", "delete", "local"))
    assert "still has nodepools" in line and "delete them first" in line
    assert "local" in rows(ok(cli("cluster", "list")))


def test_deployment_create_wait_and_list_with_filters(cli, deployed):
    assert deployed.strip() == "deployment echo1: RUNNING"
    everything = rows(ok(cli("deployment", "list")))
    assert everything["echo1"]["state"] == "RUNNING"
    assert everything["echo1"]["model"] == "local/default/models/echo"
    assert "echo1" in rows(ok(cli("deployment", "list", "--cluster", "local", "--nodepool", "local")))
    assert ok(cli("deployment", "list", "--nodepool", "other", "--cluster", "local")).strip() == "(none)"


def test_predict_unary_and_streaming(cli, deployed):
    assert ok(cli("predict", "echo", "hello")) == "v1:hello\n"
    # Each value is read as its parameter's type: text stays text, numbers become numbers.
    assert ok(cli("predict", "echo", "123")) == "v1:123\n"
    assert ok(cli("predict", "echo", "text=[1, 2]")) == "v1:[1, 2]\n"
    assert ok(cli("predict", "echo", "a=b")) == "v1:a=b\n"  # not a parameter's name: a value
    assert ok(cli("predict", "echo", "--method", "generate", "7", "2")) == "70\n71\n"
    assert "expected int" in one_line_error(cli("predict", "echo", "--method", "generate", "x", "n=two"))
    assert ok(cli("predict", "echo", "--method", "generate", "text=abc", "n=2")) == "abc0\nabc1\n"
    assert ok(cli("predict", "local/default/models/echo", "x", "--deployment-id", "echo1")) == "v1:x\n"
    assert "has no method 'nope'" in one_line_error(cli("predict", "echo", "x", "--method", "nope"))


def test_stop_start_and_wait(cli, deployed):
    assert ok(cli("deployment", "stop", "echo1")).startswith("deployment echo1: STOP")
    assert rows(ok(cli("deployment", "list")))["echo1"]["state"] in ("STOPPING", "STOPPED")
    assert ok(cli("deployment", "start", "echo1")).strip() in ("deployment echo1: STARTING",
                                                               "deployment echo1: RUNNING")
    assert ok(cli("deployment", "wait", "echo1", "--timeout", "60")).strip() == "deployment echo1: RUNNING"
    assert ok(cli("predict", "echo", "again")) == "v1:again\n"


def test_logs(cli, deployed):
    lines = ok(cli("logs", "echo1")).splitlines()
    assert "jupyter_deploy runner: serving" in lines
    assert "not found" in one_line_error(cli("logs", "nope"))


def test_model_export_writes_the_same_folder(cli, uploaded, echo_dir, tmp_path):
    dest = tmp_path / "exported"
    assert "exported to" in ok(cli("model", "export", "echo", str(dest)))
    assert (dest / "1" / "model.py").read_text() == (echo_dir / "1" / "model.py").read_text()
    assert (dest / "config.yaml").is_file()


BROKEN = """
from jupyter_deploy import ModelClass


class Broken(ModelClass):
    def load_model(self):
        raise RuntimeError("the weights are missing\\nsee the second line")

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
"""


def test_tables_are_for_people_and_json_or_yaml_for_scripts(cli, uploaded, tmp_path):
    import yaml

    nodepool = rows(ok(cli("nodepools", "list")))["local"]  # plural, as people type it
    assert re.fullmatch(r"cpus \d+, memory \d+(\.\d)? [GM]iB, accelerators \d+", nodepool["instance_type"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", nodepool["created_at"])
    assert rows(ok(cli("models", "list")))["echo"]["latest"] == "1"
    assert re.fullmatch(r"\d+(\.\d)? KiB", rows(ok(cli("model", "versions", "echo")))[
        next(iter(rows(ok(cli("model", "versions", "echo")))))]["size"])
    models = json.loads(ok(cli("models", "list", "--output", "json")))
    assert [m["id"] for m in models] == ["echo"] and isinstance(models[0]["created_at"], float)
    pools = yaml.safe_load(ok(cli("nodepool", "list", "-o", "yaml")))
    assert pools[0]["instance_type"]["memory"] > 2**20  # raw bytes for scripts
    assert json.loads(ok(cli("model", "get", "echo", "-o", "json")))["model"] == "local/default/models/echo"
    assert yaml.safe_load(ok(cli("clusters", "get", "local", "-o", "yaml")))["id"] == "local"

    # A FAILED deployment's reason is one line in the table; the whole of it in `get`.
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "model.py").write_text(BROKEN)
    (broken / "config.yaml").write_text("model:\n  id: broken\n")
    assert cli("deploy", str(broken), "--timeout", "60").returncode == 1
    row = rows(ok(cli("deployments", "list")))["broken"]
    assert row["state"] == "FAILED"
    assert row["reason"] == "load_model() failed: RuntimeError: the weights are missing…"
    full = json.loads(ok(cli("deployment", "get", "broken")))["status"]["reason"]
    assert "see the second line" in full and 'File "1/model.py"' in full
    ok(cli("deployment", "delete", "broken"))


def test_a_bad_deployment_id_is_one_clear_line(cli, uploaded):
    line = one_line_error(cli("deployment", "create", "bad.id!", "--model", "echo"))
    assert "bad.id!" in line and "use letters, digits" in line


def test_a_yaml_file_that_does_not_parse(cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("worker: [unclosed\n")
    result = cli("deployment", "create", "x1", "--config", str(broken))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "not valid YAML" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_a_yaml_error_is_one_line(cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("worker: [unclosed\n")
    assert "not valid YAML" in one_line_error(cli("cluster", "create", "x1", "--config", str(broken)))


def test_predict_on_an_unknown_model(cli, uploaded):
    line = one_line_error(cli("predict", "nosuchmodel", "x"))
    assert "nosuchmodel not found" in line


def test_deployment_delete(cli, deployed):
    assert ok(cli("deployment", "delete", "echo1")).strip() == "deleted echo1"
    assert "echo1" not in ok(cli("deployment", "list"))
    assert "not found" in one_line_error(cli("deployment", "get", "echo1"))


def test_status_then_stop(cli, uploaded, home):
    pid = daemon_pid(home)
    status = ok(cli("status"))
    assert re.search(rf"^pid\s+{pid}$", status, re.M) and re.search(rf"^home\s+{re.escape(str(home))}$",
                                                                     status, re.M)
    assert f"(pid {pid})" in ok(cli("stop"))
    wait_for(lambda: not alive(pid), 15, "the daemon to exit")
    after = cli("status")
    assert after.returncode == 1 and len(after.stdout.strip().splitlines()) == 1
