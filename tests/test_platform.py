"""End to end: a real daemon, real runner processes, the public Python API."""

from __future__ import annotations

import inspect
import os
import signal
import threading
from pathlib import Path

import pytest
from daemon_helpers import daemon_pid, isolated_home, wait_for, wait_for_state

from jupyter_deploy import (
    Client,
    ControlPlaneError,
    Deployment,
    DeploymentError,
    Model,
    Nodepool,
    NotFoundError,
    to_dataframe,
)
from jupyter_deploy.client import _api

pytestmark = pytest.mark.timeout(240)

ECHO = '''
import os
import time
from typing import Iterator
from jupyter_deploy import ModelClass

VERSION = "{version}"


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        """Echo the text, tagged with the version."""
        return f"{{VERSION}}:{{text}}"

    @ModelClass.method
    def generate(self, text: str, n: int = 3, delay: float = 0.0) -> Iterator[str]:
        for i in range(n):
            time.sleep(delay)
            yield f"{{text}}{{i}}"

    @ModelClass.method
    def stream(self, words: Iterator[str], suffix: str = "!") -> Iterator[str]:
        for w in words:
            yield w + suffix

    @ModelClass.method
    def env(self) -> dict:
        return {{k: os.environ.get(k, "") for k in
                ("DEPLOYMENT_ID", "MODEL_VERSION", "MODEL_PATH", "CUDA_VISIBLE_DEVICES")}}

    @ModelClass.method
    def pid(self) -> int:
        return os.getpid()
'''


def write_model(root: Path, model_id: str, version: str = "v1") -> Path:
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "1" / "model.py").write_text(ECHO.format(version=version))
    (root / "config.yaml").write_text(f"model:\n  id: {model_id}\n")
    (root / "requirements.txt").write_text("")
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, 'home', JUPYTER_DEPLOY_FAKE_GPUS='2') as home:  # two fake GPUs to pin
        yield home


@pytest.fixture(scope="module")
def client(home):
    return Client()


@pytest.fixture(scope="module")
def echo(client, tmp_path_factory):
    """The model `echo`, uploaded and deployed on the local nodepool as deployment `echo`."""
    root = write_model(tmp_path_factory.mktemp("echo"), "echo")
    version = client.upload_model(root)
    deployment = Nodepool("local", compute_cluster_id="local", client=client).create_deployment(
        "echo", worker={"model": {"id": "echo"}})
    deployment.wait_until_ready(120)
    return version


def test_defaults_exist_on_first_start(client):
    clusters = client.list_compute_clusters()
    assert [c.id for c in clusters] == ["local"]
    nodepools = client.compute_cluster("local").list_nodepools()
    assert [n.id for n in nodepools] == ["local"]
    config = nodepools[0].config
    assert config["instance_type"]["accelerators"] == 2  # JUPYTER_DEPLOY_FAKE_GPUS
    assert config["instance_type"]["cpus"] == os.cpu_count()


def test_upload_deploy_and_the_three_call_shapes(client, echo):
    assert echo.number == 1
    model = Model("local/default/models/echo", client=client)
    assert model.predict("hi") == "v1:hi"
    assert list(model.generate("x", n=2)) == ["x0", "x1"]
    assert list(model.stream(iter(["a", "b"]), suffix="?")) == ["a?", "b?"]
    env = model.env()
    assert env["DEPLOYMENT_ID"] == "echo" and env["MODEL_VERSION"] == echo.id


def test_model_methods_come_from_the_registry(client, echo):
    model = client.model("echo")
    sig = inspect.signature(model.predict)
    assert list(sig.parameters) == ["text", "deployment_id", "compute_cluster_id", "nodepool_id"]
    assert sig.parameters["text"].annotation is str
    assert "tagged with the version" in model.predict.__doc__


def test_routing_rules(client, echo):
    model = client.model("echo")
    assert model.predict("a", deployment_id="echo") == "v1:a"
    assert model.predict("a", compute_cluster_id="local", nodepool_id="local") == "v1:a"
    with pytest.raises(ValueError, match="not both"):
        model.predict("a", deployment_id="echo", compute_cluster_id="local", nodepool_id="local")
    with pytest.raises(NotFoundError, match="nope"):
        model.predict("a", deployment_id="nope")


def test_a_model_without_deployment_says_how_to_create_one(client, tmp_path):
    client.upload_model(write_model(tmp_path / "lonely", "lonely"))
    with pytest.raises(ControlPlaneError, match="has no deployment; create one"):
        client.model("lonely").predict("x")


def test_one_deployment_per_model_per_nodepool(client, echo):
    with pytest.raises(ControlPlaneError, match="already has a deployment"):
        Nodepool("local", client=client).create_deployment("echo2", worker={"model": {"id": "echo"}})


@pytest.mark.parametrize("deployment_id", ["-bad", "with space", "", "x" * 65])
def test_deployment_ids_keep_the_id_rule(client, deployment_id):
    with pytest.raises(ControlPlaneError, match="bad deployment id"):
        Nodepool("local", client=client).create_deployment(deployment_id, worker={"model": {"id": "echo"}})


def test_bad_yaml_files_are_clear_errors(client, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("worker: [unclosed\n")
    with pytest.raises(ControlPlaneError, match="not valid YAML"):
        Nodepool("local", client=client).create_deployment("x1", broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("worker:\n  model:\n    id: echo\nautoscale_config:\n  min_replicas: two\ncolour: red\n")
    with pytest.raises(ControlPlaneError) as e:
        Nodepool("local", client=client).create_deployment("x2", wrong)
    assert "autoscale_config.min_replicas" in str(e.value) and "colour" in str(e.value)


def test_listings_and_dataframes(client, echo):
    deployments = client.list_deployments()
    assert "echo" in [d.id for d in deployments]
    frame = to_dataframe(deployments)
    assert list(frame[frame["id"] == "echo"]["state"]) == ["RUNNING"]
    assert client.list_deployments(nodepool_id="nope", compute_cluster_id="local") == []
    assert "echo" in list(client.list_models().to_dataframe()["id"])


def test_a_killed_runner_is_restarted(client, echo):
    model = client.model("echo")
    pid = model.pid()
    os.kill(pid, signal.SIGKILL)
    def replaced() -> bool:  # a new replica, READY (the deployment reads RUNNING a moment before)
        status = Deployment("echo", client=client).status
        return status["state"] == "RUNNING" and any(
            r["pid"] != pid and r["state"] == "READY" for r in status["replicas"])

    wait_for(replaced, 60, "a new READY replica")
    assert model.pid() != pid  # the route was resolved again, transparently
    assert model.predict("back") == "v1:back"


def test_update_rolls_out_a_new_version_without_failed_requests(client, echo, tmp_path):
    model = client.model("echo")
    failures: list[BaseException] = []
    answers: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and len(answers) < 20000:
            try:
                answers.append(model.predict("x"))
            except BaseException as e:  # noqa: BLE001 - any failure fails the test
                failures.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        client.upload_model(write_model(tmp_path / "echo", "echo", version="v2"))
        Deployment("echo", client=client).update()  # unpinned: re-resolved to the latest
        wait_for(lambda: "v2:x" in answers[-5:], 90, "the new version to answer")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:3]
    assert "v1:x" in answers and answers[-1] == "v2:x"


def test_a_rollout_that_cannot_come_up_is_rolled_back(client, echo, tmp_path):
    model = client.model("echo")
    before = model.predict("x")
    root = write_model(tmp_path / "echo", "echo", version="broken")
    (root / "1" / "model.py").write_text(
        ECHO.format(version="broken").replace("class Echo(ModelClass):", "class Echo(ModelClass):\n"
                                              "    def load_model(self):\n"
                                              "        raise RuntimeError('bad weights')\n"))
    client.upload_model(root)
    deployment = Deployment("echo", client=client).update()
    with pytest.raises(DeploymentError, match="rolled back") as e:
        deployment.wait_until_ready(120)
    assert "bad weights" in e.value.reason + "\n".join(e.value.log_tail)
    assert model.predict("x") == before  # the previous version never stopped serving
    assert deployment.state == "RUNNING"


def test_a_stream_in_flight_survives_a_rollout(client, echo, tmp_path):
    model = client.model("echo")
    stream = model.generate("s", n=40, delay=0.2)  # 8 s: longer than the switch and the drain delay
    first = next(stream)
    client.upload_model(write_model(tmp_path / "echo", "echo", version="v3"))
    deployment = Deployment("echo", client=client).update()
    deployment.wait_until_ready(120)
    rest = list(stream)  # the old replica drains: the stream it serves runs to its end
    assert [first, *rest] == [f"s{i}" for i in range(40)]
    assert model.predict("x") == "v3:x"


def test_wait_until_ready_failure_carries_state_and_logs(client, tmp_path):
    root = write_model(tmp_path / "broken", "broken")
    (root / "1" / "model.py").write_text(
        "from jupyter_deploy import ModelClass\n\nclass B(ModelClass):\n"
        "    def load_model(self):\n        raise RuntimeError('no weights here')\n\n"
        "    @ModelClass.method\n    def predict(self, x: str) -> str:\n        return x\n")
    client.upload_model(root)
    deployment = Nodepool("local", client=client).create_deployment("broken", worker={"model": {"id": "broken"}})
    with pytest.raises(DeploymentError) as e:
        deployment.wait_until_ready(60)
    assert e.value.state in ("FAILED", "STARTING")
    assert any("no weights here" in line for line in e.value.log_tail) or "no weights here" in e.value.reason
    deployment.delete()
    assert "broken" not in [d.id for d in client.list_deployments()]


def test_fake_gpus_are_pinned_one_per_replica(client, tmp_path):
    client.upload_model(write_model(tmp_path / "gpu", "gpu"))
    deployment = Nodepool("local", client=client).create_deployment(
        "gpu", worker={"model": {"id": "gpu"}}, resources={"num_accelerators": 1},
        autoscale_config={"min_replicas": 2, "max_replicas": 2})
    deployment.wait_until_ready(90)
    replicas = deployment.status["replicas"]
    assert sorted(r["gpus"] for r in replicas) == ["0", "1"]
    seen = {client.model("gpu").env()["CUDA_VISIBLE_DEVICES"] for _ in range(20)}
    assert seen <= {"0", "1"} and seen
    deployment.delete()


def test_stop_and_start(client, echo):
    deployment = Deployment("echo", client=client)
    deployment.stop()
    wait_for_state(client, "echo", "STOPPED", 30)
    assert deployment.status["replicas"] == [] or all(
        r["state"] in ("STOPPED",) for r in deployment.status["replicas"])
    deployment.start()
    deployment.wait_until_ready(60)
    assert client.model("echo").predict("again").endswith(":again")


def test_sigkill_of_the_daemon_loses_nothing(client, echo, home):
    before = {d.id: d.to_dict()["version"] for d in client.list_deployments()}
    model_pid = client.model("echo").pid()
    os.kill(daemon_pid(home), signal.SIGKILL)
    _api._default = None
    again = Client()  # starts a new daemon over the same state
    after = {d.id: d.to_dict()["version"] for d in again.list_deployments()}
    assert after == before
    Deployment("echo", client=again).wait_until_ready(60)
    assert again.model("echo").pid() == model_pid  # the running replica was re-adopted
    assert again.model("echo").predict("still").endswith(":still")


def test_versions_by_number_and_id_and_a_guarded_delete(home, tmp_path):
    client = Client()  # the module's client may point at a daemon an earlier test killed
    first = client.upload_model(write_model(tmp_path / "a", "guarded", version="g1"))
    second = client.upload_model(write_model(tmp_path / "b", "guarded", version="g2"))
    assert (first.number, second.number) == (1, 2)
    assert Model(model_id="guarded", model_version=1, client=client).version.id == first.id
    assert Model(model_id="guarded", model_version={"id": second.id}, client=client).version.number == 2
    assert [v.number for v in client.model("guarded").list_versions()] == [2, 1]
    exported = client.model("guarded").export(tmp_path / "out", first.id)
    assert 'VERSION = "g1"' in (exported / "1" / "model.py").read_text()

    Nodepool("local", client=client).create_deployment(
        "guarded", worker={"model": {"id": "guarded"}}).wait_until_ready(60)
    with pytest.raises(ControlPlaneError, match="used by deployment"):
        client.model("guarded").delete()
    client.model("guarded").delete(force=True)  # its deployment goes first, replicas stopped
    assert "guarded" not in [d.id for d in client.list_deployments()]
    with pytest.raises(NotFoundError):
        client.model("guarded")
