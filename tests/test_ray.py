"""Ray compute clusters: a real multi-node Ray cluster on loopback, a real daemon, real runner actors.

One cluster for the module (``ray_helpers.RayCluster``): a head node labelled
``pool=cpu`` and a node labelled ``pool=gpu`` with two fake GPUs of type T4 (Ray
resources: the GPU placement paths run without a GPU). The tests run in file
order and share it: the last two take a node away and then the whole cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
from daemon_helpers import alive, daemon_pid, isolated_home, wait_for, wait_for_state
from ray_helpers import RAY_ENV, RayCluster, free_port

from jupyter_deploy import Client, ControlPlaneError, Deployment
from jupyter_deploy.control._backends.ray import namespace_for
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.runner._ray_actor import node_root

pytest.importorskip("ray", reason="Ray compute clusters need the ray extra (pip install 'jupyter_deploy[ray]')")
pytestmark = pytest.mark.timeout(420)  # the first test also waits for `ray start` (retried)

MODEL = '''
import os
from typing import Iterator
from jupyter_deploy import ModelClass

VERSION = "{version}"


class Where(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return VERSION + ":" + text

    @ModelClass.method
    def where(self) -> str:
        """The Ray node, the runner's pid and the GPUs Ray gave it."""
        return "|".join([os.environ.get("JUPYTER_DEPLOY_RAY_NODE_ID", ""), str(os.getpid()),
                         os.environ.get("CUDA_VISIBLE_DEVICES", "")])

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{{text}}{{i}}"

    @ModelClass.method
    def stream(self, words: Iterator[str]) -> Iterator[str]:
        for w in words:
            yield w.upper()
'''

GPU_CONFIG = '''
model:
  id: {model_id}
inference_compute_info:
  num_accelerators: {gpus}
  accelerator_type: ["NVIDIA-T4"]
'''


def write(root, model_id: str, version: str = "1", gpus: int = 0):
    root.mkdir(parents=True, exist_ok=True)
    (root / "1").mkdir(exist_ok=True)
    (root / "1" / "model.py").write_text(MODEL.format(version=version))
    config = GPU_CONFIG.format(model_id=model_id, gpus=gpus) if gpus else f"model:\n  id: {model_id}\n"
    (root / "config.yaml").write_text(config)
    (root / "requirements.txt").write_text("")
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("raycluster")
    with RayCluster(root) as ray_cluster:
        ray_cluster.start_head(num_cpus=4, labels={"pool": "cpu"})
        ray_cluster.add_node(num_cpus=4, num_gpus=2, labels={"pool": "gpu"}, resources={"accelerator_type:T4": 2})
        yield ray_cluster


@pytest.fixture(scope="module")
def client(cluster, tmp_path_factory):
    with isolated_home(tmp_path_factory, "ray_home", **RAY_ENV) as home:
        client = Client()
        ray = client.create_compute_cluster("rc", cloud_provider={"id": "ray"}, ray_address=cluster.address)
        ray.create_nodepool("all")
        ray.create_nodepool("gpu", node_labels={"pool": "gpu"})
        ray.create_nodepool("cpu", node_labels={"pool": "cpu"})
        models = tmp_path_factory.mktemp("ray_models")
        for model_id in ("where", "idle", "roll"):
            client.upload_model(write(models / model_id, model_id))
        client.upload_model(write(models / "gpu", "gpu", gpus=1))
        client.upload_model(write(models / "big", "big", gpus=3))
        client.home = home
        client.models_root = models
        yield client
        for d in client.list_deployments():
            Deployment(d.id, client=client).delete()
        client.close()
    # What the replicas unpacked on the nodes (all on this machine): the versions, the replicas' folders.
    shutil.rmtree(node_root(namespace_for(home)), ignore_errors=True)


def node_of(answer: str) -> str:
    return answer.split("|")[0]


def nodepool(client, pool: str):
    return client.compute_cluster("rc").nodepool(pool)


def test_a_ray_cluster_describes_its_nodes_and_a_bad_address_is_refused(cluster, client):
    described = client.compute_cluster("rc").describe()
    assert described["cloud_provider"] == "ray" and described["ray_address"] == cluster.address
    by_pool = {n["labels"].get("pool"): n for n in described["nodes"]}
    assert set(by_pool) == {"cpu", "gpu"}
    assert by_pool["gpu"]["gpus"] == ["T4", "T4"] and by_pool["gpu"]["cpus"] == 4
    assert by_pool["cpu"]["gpus"] == [] and by_pool["cpu"]["memory"] > 0
    # The pool's instance_type defaulted to the largest node its labels select.
    assert nodepool(client, "gpu").config["instance_type"]["accelerators"] == 2
    assert nodepool(client, "gpu").config["instance_type"]["accelerator_type"] == "T4"
    # local is this host, as one node.
    [host] = client.compute_cluster("local").describe()["nodes"]
    assert host["cpus"] == os.cpu_count()

    listing = subprocess.run([sys.executable, "-m", "jupyter_deploy", "cluster", "list"], capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("rc "))
    assert "ray" in line and cluster.address in line and "2 nodes" in line and "pool=gpu" in line

    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(ControlPlaneError, match=f"no Ray cluster answers at {nowhere}") as e:
        client.create_compute_cluster("nowhere", cloud_provider="ray", ray_address=nowhere)
    assert e.value.code == "FAILED_PRECONDITION"
    with pytest.raises(ControlPlaneError, match="no node of Ray cluster rc has the labels pool=tpu"):
        client.compute_cluster("rc").create_nodepool("tpu", node_labels={"pool": "tpu"})
    with pytest.raises(ControlPlaneError, match="node_labels: select Ray nodes; compute cluster local is local"):
        client.compute_cluster("local").create_nodepool("labelled", node_labels={"pool": "gpu"})


def test_three_call_shapes_on_replicas_spread_over_two_nodes_with_their_call_logs(client):
    deployment = nodepool(client, "all").create_deployment(
        "where", worker={"model": {"id": "where"}}, autoscale_config={"min_replicas": 2},
        inference_logger={"mode": "all"})
    deployment.wait_until_ready(120)
    model = client.model("where")
    assert model.predict("hi", deployment_id="where") == "1:hi"
    assert list(model.generate("g", deployment_id="where")) == ["g0", "g1", "g2"]
    assert list(model.stream(iter(["a", "b"]), deployment_id="where")) == ["A", "B"]
    # Replicas of a deployment spread over the nodes (the client spreads calls over replicas).
    nodes = {node_of(model.where(deployment_id="where")) for _ in range(20)}
    assert len(nodes) == 2
    assert len(deployment.status["replicas"]) == 2

    # Records of replicas on both nodes reach the daemon's call log, inputs included.
    def logged():
        records = client.call("CallLogs", cpb.CallLogsRequest(ref=deployment._ref(), inference=True)).records
        return records if len({r.replica_id for r in records}) == 2 and len(records) >= 23 else None

    records = wait_for(logged, 30, "call records from both replicas")
    assert {"predict", "generate", "stream", "where"} <= {r.method for r in records}
    assert {r.status for r in records} == {"OK"}
    logs = deployment.inference_logs()
    assert logs[logs["method"] == "predict"].iloc[0]["inputs"] == {"text": "hi"}
    # The runners' output reaches the deployment's log too.
    assert any("jupyter_deploy runner: serving" in line for line in deployment.logs(100))
    assert deployment.metrics()["ready_replicas"] == 2


def test_gpus_are_rays_and_what_does_not_fit_now_waits_with_the_reason(client):
    gpu = nodepool(client, "gpu").create_deployment("gpu", worker={"model": {"id": "gpu"}},
                                                    autoscale_config={"min_replicas": 2})
    gpu.wait_until_ready(120)
    model = client.model("gpu")
    seen = {model.where(deployment_id="gpu") for _ in range(12)}
    assert {answer.split("|")[2] for answer in seen} == {"0", "1"}  # each replica one GPU, from Ray
    # Both GPUs are held: one more replica waits, saying for what.
    gpu.update(autoscale_config={"min_replicas": 3})
    wait_for(lambda: "waiting for room on the Ray cluster" in gpu.status["reason"], 30, "the wait's reason")
    reason = gpu.status["reason"]
    assert "1 GPU of type T4" in reason and "nodepool gpu" in reason
    gpu.update(autoscale_config={"min_replicas": 1, "max_replicas": 1})
    wait_for_state(client, "gpu", "RUNNING", 60)
    gpu.delete()


def test_what_can_never_fit_is_refused_by_create_deployment(client):
    with pytest.raises(ControlPlaneError) as e:
        nodepool(client, "gpu").create_deployment("big", worker={"model": {"id": "big"}})
    assert e.value.code == "FAILED_PRECONDITION"
    assert "needs 3 GPU(s) of type T4, the largest node of nodepool gpu has 2 GPU(s)" in str(e.value)
    with pytest.raises(ControlPlaneError, match="GPUs of type NVIDIA-T4; the nodes of the pool have none"):
        nodepool(client, "cpu").create_deployment("gpu", worker={"model": {"id": "gpu"}})


def test_requirements_the_nodes_lack_become_a_ray_runtime_env(client):
    folder = write(client.models_root / "needs", "needs")
    (folder / "requirements.txt").write_text("grpcio>=1\njd-no-such-package-for-ray==0.0.1\n")
    client.upload_model(folder)
    deployment = nodepool(client, "cpu").create_deployment("needs", worker={"model": {"id": "needs"}})
    # Asked on a node of the pool: grpcio is there; only the other goes to the runtime_env.
    line = wait_for(lambda: next((ln for ln in deployment.logs(50) if "Ray runtime_env pip:" in ln), None), 60,
                    "the runtime_env note")
    assert "jd-no-such-package-for-ray==0.0.1" in line and "grpcio" not in line
    deployment.delete()


def test_the_magics_deploy_to_a_ray_nodepool_unchanged(client):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell(config=config)
    shell.displayhook.flush = lambda: None
    try:
        shell.run_cell("%load_ext jupyter_deploy").raise_error()
        shell.run_cell("%%deploy magic --nodepool cpu --cluster rc -o dep\n"
                       + MODEL.format(version="m")).raise_error()
        assert shell.user_ns["dep"].state == "RUNNING"
        shell.run_cell("x = %predict magic hi --cluster rc --nodepool cpu").raise_error()
        assert shell.user_ns["x"] == "m:hi"
        shell.run_cell("w = %predict magic --method where").raise_error()
        assert node_of(shell.user_ns["w"]) == _head(client)  # the pool's one node
    finally:
        magics = shell.magics_manager.registry.get("DeployMagics")
        if magics is not None:
            magics.close()
    Deployment("magic", client=client).delete()


def test_a_rollout_fails_no_call(client):
    deployment = nodepool(client, "all").create_deployment("roll", worker={"model": {"id": "roll"}},
                                                           drain_seconds=1)
    deployment.wait_until_ready(120)
    model = client.model("roll")
    answers, failures = set(), []
    stop = threading.Event()

    def call() -> None:
        for _ in range(5000):  # bounded; stops sooner
            if stop.is_set():
                return
            try:
                answers.add(model.predict("x", deployment_id="roll"))
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                failures.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        client.upload_model(write(client.models_root / "roll", "roll", version="2"))
        deployment.update(worker={"model": {"id": "roll"}})
        wait_for(lambda: "2:x" in answers and deployment.status["state"] == "RUNNING"
                 and len(deployment.status["replicas"]) == 1, 120, "the rollout to version 2")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == [] and answers == {"1:x", "2:x"}
    deployment.delete()


def test_scale_to_zero_then_a_call_wakes_it(client):
    deployment = nodepool(client, "all").create_deployment(
        "idle", worker={"model": {"id": "idle"}}, drain_seconds=0,
        autoscale_config={"min_replicas": 0, "max_replicas": 1, "scale_to_zero_delay_seconds": 1})
    deployment.wait_until_ready(120)
    model = client.model("idle")
    first = model.where(deployment_id="idle").split("|")[1]
    wait_for(lambda: deployment.status["state"] == "IDLE" and not deployment.status["replicas"], 60,
             "the deployment to scale to zero")
    again = model.where(deployment_id="idle").split("|")[1]  # waits for a new replica
    assert again != first and deployment.status["state"] == "RUNNING"
    assert deployment.status["autoscale"]["last_cold_start_seconds"] > 0
    deployment.delete()


def test_a_kill_9_of_the_actors_worker_restarts_the_replica(client):
    deployment = Deployment("where", client=client)
    model = client.model("where")
    before = {r["id"]: r for r in deployment.status["replicas"]}
    runner_pid = int(model.where(deployment_id="where").split("|")[1])
    worker = _parent(runner_pid)  # the runner is its actor's child; the actor's first line names it
    assert any(f"actor worker pid {worker}," in line for line in deployment.logs(400))
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not alive(runner_pid), 15, "the runner to exit with its actor")
    wait_for(lambda: sum(r["restarts"] for r in deployment.status["replicas"]) == 1
             and deployment.status["state"] == "RUNNING"
             and all(r["state"] == "READY" for r in deployment.status["replicas"]), 90, "the restart")
    assert {r["id"] for r in deployment.status["replicas"]} == set(before)
    assert {model.predict("y", deployment_id="where") for _ in range(4)} == {"1:y"}


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_restarted_daemon_re_adopts_the_actors_without_restarting_them(client):
    deployment = Deployment("where", client=client)
    model = client.model("where")
    runners = {model.where(deployment_id="where").split("|")[1] for _ in range(12)}
    assert len(runners) == 2
    replicas = {r["id"]: r["address"] for r in deployment.status["replicas"]}
    os.kill(daemon_pid(client.home), signal.SIGKILL)
    fresh = Client()  # starts a new daemon
    again = Deployment("where", client=fresh)
    wait_for(lambda: again.status["state"] == "RUNNING" and len(again.status["replicas"]) == 2, 60,
             "the re-adoption")
    # The same replicas, at the same addresses, served by the same runner processes.
    assert {r["id"]: r["address"] for r in again.status["replicas"]} == replicas
    assert {fresh.model("where").where(deployment_id="where").split("|")[1] for _ in range(12)} == runners
    fresh.close()


def test_a_replica_on_a_node_that_leaves_starts_again_on_another(client, cluster):
    model = client.model("where")
    deployment = Deployment("where", client=client)
    gpu_node = next(n["node_id"] for n in client.compute_cluster("rc").describe()["nodes"]
                    if n["labels"].get("pool") == "gpu")
    cluster.kill_node(gpu_node)
    wait_for(lambda: deployment.status["state"] == "RUNNING" and len(deployment.status["replicas"]) == 2
             and all(r["state"] == "READY" for r in deployment.status["replicas"])
             and {node_of(model.where(deployment_id="where")) for _ in range(6)} == {_head(client)},
             120, "both replicas on the remaining node")
    assert model.predict("z", deployment_id="where") == "1:z"


def _head(client) -> str:
    return next(n["node_id"] for n in client.compute_cluster("rc").describe()["nodes"]
                if n["labels"].get("pool") == "cpu")


def test_a_cluster_that_goes_away_fails_its_deployments_which_recover_when_it_returns(client, cluster):
    deployment = Deployment("where", client=client)
    cluster.stop()
    wait_for_state(client, "where", "FAILED", 60)
    reason = deployment.status["reason"]
    assert cluster.address in reason and "Ray cluster" in reason
    assert "error" in client.compute_cluster("rc").describe()
    cluster.start_head(num_cpus=4, labels={"pool": "cpu"}, port=cluster.port)
    wait_for_state(client, "where", "RUNNING", 120)
    assert client.model("where").predict("back", deployment_id="where") == "1:back"
