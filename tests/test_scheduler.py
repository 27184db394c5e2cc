"""The local scheduler over a real Store and real runner processes.

Rows are written straight into the store (what Compute and the Registry
would write), and each version's folder is written by hand; ``version_dir``
is just a function that finds it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import wait_for, write_model

from jupyter_deploy import _tokens, _wire
from jupyter_deploy.control._auth import server_secret
from jupyter_deploy.control._configs import replica_spec
from jupyter_deploy.control._errors import FailedPrecondition
from jupyter_deploy.control._host_info import HostInfo, detect
from jupyter_deploy.control._scheduler import Scheduler
from jupyter_deploy.control._store import Store, now
from jupyter_deploy.proto import runner_pb2 as pb
from jupyter_deploy.proto import runner_pb2_grpc

pytestmark = pytest.mark.timeout(60)

USER = "local"

ECHO = '''
import os

from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return os.environ["MODEL_VERSION"] + ":" + text

    @ModelClass.method
    def gpus(self, text: str) -> str:
        return os.environ["CUDA_VISIBLE_DEVICES"]
'''

BROKEN = '''
from jupyter_deploy import ModelClass


class Broken(ModelClass):
    def load_model(self):
        raise RuntimeError("the weights are missing")

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


class Platform:
    """A Store with the embedded defaults, plus helpers that add versions and deployments."""

    def __init__(self, root: Path):
        self.root = root
        self.store = Store(root / "home" / "state.db")
        self.schedulers: list[Scheduler] = []
        with self.store.tx() as db:
            db.execute("INSERT INTO users (id, created_at) VALUES (?, ?)", (USER, now()))
            db.execute("INSERT INTO apps (user_id, id, created_at) VALUES (?, 'default', ?)", (USER, now()))
            db.execute("INSERT INTO compute_clusters (user_id, id, config_json, created_at) "
                       "VALUES (?, 'local', '{}', ?)", (USER, now()))
            db.execute("INSERT INTO nodepools (user_id, compute_cluster_id, id, config_json, created_at) "
                       "VALUES (?, 'local', 'local', '{}', ?)", (USER, now()))

    def version_dir(self, version_id: str) -> Path:
        return self.root / "versions" / version_id

    def add_version(self, version_id: str, source: str = ECHO, model_id: str = "echo",
                    compute: dict | None = None, python: str = sys.executable) -> str:
        write_model(self.version_dir(version_id), source, model_id)
        with self.store.tx() as db:
            db.execute("INSERT OR IGNORE INTO models (user_id, app_id, id, created_at) VALUES (?, 'default', ?, ?)",
                       (USER, model_id, now()))
            db.execute("INSERT OR IGNORE INTO blobs (sha256, size, created_at) VALUES (?, 0, ?)",
                       (f"sha-{version_id}", now()))
            number = db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] + 1
            db.execute("INSERT INTO versions (id, user_id, app_id, model_id, number, sha256, description, "
                       "config_json, python, created_at) VALUES (?, ?, 'default', ?, ?, ?, ?, ?, ?, ?)",
                       (version_id, USER, model_id, number, f"sha-{version_id}",
                        pb.ModelDescription().SerializeToString(),
                        json.dumps({"model": {"id": model_id}, "inference_compute_info": compute or {}}),
                        python, now()))
        return version_id

    def add_deployment(self, deployment_id: str, version_id: str, model_id: str = "echo", **config) -> None:
        with self.store.tx() as db:
            db.execute("INSERT INTO deployments (user_id, id, compute_cluster_id, nodepool_id, model_user_id, "
                       "model_app_id, model_id, version_id, config_json, signing_key, created_at, updated_at) "
                       "VALUES (?, ?, 'local', 'local', ?, 'default', ?, ?, ?, ?, ?, ?)",
                       (USER, deployment_id, USER, model_id, version_id, json.dumps(config),
                        os.urandom(32).hex(), now(), now()))

    def scheduler(self, host: HostInfo | None = None, **kwargs) -> Scheduler:
        s = Scheduler(self.store, host or HostInfo(cpus=2.0, memory=8 << 30), self.root / "home",
                      self.version_dir, **{"interval": 0.2, **kwargs})
        self.schedulers.append(s)
        s.start()
        return s

    def deployment(self, deployment_id: str):
        return self.store.one("SELECT * FROM deployments WHERE user_id = ? AND id = ?", (USER, deployment_id))

    def replicas(self, deployment_id: str, state: str | None = None) -> list:
        rows = self.store.query("SELECT * FROM replicas WHERE deployment_id = ? ORDER BY started_at",
                                (deployment_id,))
        return [r for r in rows if state is None or r["state"] == state]

    def wait_state(self, deployment_id: str, state: str, timeout: float = 30.0) -> None:
        wait_for(lambda: self.deployment(deployment_id)["state"] == state, timeout,
                 f"{deployment_id} to be {state} (it is {self.deployment(deployment_id)['state']}: "
                 f"{self.deployment(deployment_id)['reason']})")

    def token(self, deployment_id: str) -> str:
        # As the router signs: the deployment's key, derived from the home's secret and its salt.
        keys = _tokens.RouteKeys(server_secret(self.root / "home"))
        return keys.sign(self.deployment(deployment_id)["signing_key"], deployment_id=deployment_id, caller=USER)

    def call(self, address: str, deployment_id: str, method: str = "predict", text: str = "hi") -> str:
        request = pb.PredictRequest(method=method, args=[pb.Entry(key="text", value=pb.Value(str=text))])
        with grpc.insecure_channel(address) as channel:
            reply = runner_pb2_grpc.RunnerStub(channel).Predict(
                request, timeout=10, metadata=[(_wire.ROUTE_TOKEN_KEY, self.token(deployment_id))])
        return reply.output.str

    def predict(self, scheduler: Scheduler, deployment_id: str, text: str = "hi") -> str:
        address, _ = scheduler.route(USER, deployment_id)
        return self.call(address, deployment_id, text=text)

    def close(self) -> None:
        pids = [r["pid"] for r in self.store.query("SELECT pid FROM replicas WHERE pid IS NOT NULL")]
        for s in reversed(self.schedulers):
            s.stop(stop_runners=True)
        for pid in pids:  # whatever a failed test left behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.store.close()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    try:
        yield p
    finally:
        p.close()


def alive(pid: int) -> bool:
    """Running and not a zombie (a runner we started and nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_deployment_runs_serves_signed_calls_and_restarts_a_killed_replica(platform: Platform) -> None:
    platform.add_deployment("echo", platform.add_version("v1"))
    scheduler = platform.scheduler(backoff=0.05, log_max_bytes=100)
    platform.wait_state("echo", "RUNNING")
    assert platform.predict(scheduler, "echo") == "v1:hi"
    [first] = platform.replicas("echo")
    assert platform.call(first["address"], "echo", method="gpus") == ""  # no GPU asked, none visible

    os.killpg(first["pid"], signal.SIGKILL)
    wait_for(lambda: [r["pid"] for r in platform.replicas("echo", "READY")] not in ([], [first["pid"]]), 30,
             "the killed replica to be restarted")
    assert platform.predict(scheduler, "echo", "again") == "v1:again"
    [second] = platform.replicas("echo")
    assert (second["id"], second["restarts"]) == (first["id"], 1)
    # The restart rotated the (tiny) log; logs() reads across both files.
    logs = "\n".join(scheduler.logs(USER, "echo"))
    assert logs.count(f"replica {first['id']} of version v1 starting") == 2
    assert "serving" in logs
    assert scheduler.logs(USER, "echo", lines=1) == scheduler.logs(USER, "echo")[-1:]


def test_a_model_error_fails_the_deployment_at_once_with_the_models_exception(platform: Platform) -> None:
    platform.add_deployment("broken", platform.add_version("b1", BROKEN, model_id="broken"), model_id="broken")
    scheduler = platform.scheduler(crash_limit=3, backoff=0.05)
    platform.wait_state("broken", "FAILED")
    row = platform.deployment("broken")
    # The model's exception as the runner recorded it, not a crash count or a guess from the log.
    assert row["reason"].splitlines()[0] == "load_model() failed: RuntimeError: the weights are missing"
    assert 'File "1/model.py", line 7, in load_model' in row["reason"]
    assert "crashed" not in row["reason"] and "Last log lines" not in row["reason"]
    failure = json.loads(row["failure_json"])
    assert (failure["step"], failure["type"], failure["message"]) == (
        "load_model", "RuntimeError", "the weights are missing")
    assert platform.replicas("broken") == [] or all(r["restarts"] == 0 for r in platform.replicas("broken"))
    starts = "\n".join(scheduler.logs(USER, "broken")).count("of version b1 starting")
    assert starts == 1  # never restarted
    wait_for(lambda: not platform.replicas("broken"), 15, "the failed deployment's replicas to go")
    with pytest.raises(FailedPrecondition, match="deployment broken is FAILED: load_model"):
        scheduler.route(USER, "broken")

    # FAILED stays until the deployment is started (or updated) again, which retries it.
    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET updated_at = ? WHERE id = 'broken'", (now(),))
    scheduler.kick()
    wait_for(lambda: platform.deployment("broken")["state"] != "FAILED", 10, "the retry")
    platform.wait_state("broken", "FAILED")


CRASHING = '''
import os

from jupyter_deploy import ModelClass


class Crashing(ModelClass):
    def load_model(self):
        os._exit(7)  # the process dies: no exception for the runner to record

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


def test_a_replica_that_crashes_is_restarted_then_failed_with_the_exit_code(platform: Platform) -> None:
    platform.add_deployment("crashing", platform.add_version("c1", CRASHING, model_id="crashing"),
                            model_id="crashing")
    scheduler = platform.scheduler(crash_limit=3, backoff=0.05)
    platform.wait_state("crashing", "FAILED")
    row = platform.deployment("crashing")
    assert "crashed 3 times" in row["reason"] and "exit code 7" in row["reason"]
    assert row["failure_json"] == ""
    assert "\n".join(scheduler.logs(USER, "crashing")).count("of version c1 starting") == 3


def test_a_failure_record_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    from jupyter_deploy.control._calllog import replica_dir, take_failure

    folder = replica_dir(tmp_path, USER, "echo", "r1")
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"step": "test", "type": "Leak", "message": "another replica's", "traceback": ""}))
    (folder / _wire.FAILURE_FILE).symlink_to(secret)
    assert take_failure(tmp_path, USER, "echo", "r1") is None
    assert not (folder / _wire.FAILURE_FILE).is_symlink()  # taken away, so a restart does not read it
    os.mkfifo(folder / _wire.FAILURE_FILE)
    assert take_failure(tmp_path, USER, "echo", "r1") is None  # did not block on the FIFO


def test_fake_gpus_are_pinned_one_per_replica(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_DEPLOY_FAKE_GPUS", "2")
    platform.add_deployment("gpu", platform.add_version("g1", compute={"num_accelerators": 1}),
                            autoscale_config={"min_replicas": 3})
    scheduler = platform.scheduler(host=detect())
    wait_for(lambda: len(platform.replicas("gpu", "READY")) == 2, 30, "two replicas, one per GPU")
    ready = platform.replicas("gpu", "READY")
    assert sorted(platform.call(r["address"], "gpu", method="gpus") for r in ready) == ["0", "1"]
    assert sorted(r["gpus"] for r in platform.replicas("gpu")) == ["0", "1"]  # the third was never started
    wait_for(lambda: platform.deployment("gpu")["reason"] == "waiting for 1 GPU(s): all 2 in use by gpu", 10,
             "the deployment to say why it waits")
    assert platform.deployment("gpu")["state"] == "STARTING"
    assert platform.predict(scheduler, "gpu") == "g1:hi"  # the two that fit serve meanwhile


def test_stop_start_and_delete(platform: Platform) -> None:
    # The uploading interpreter is gone: the replicas run with the daemon's, and the log says so.
    platform.add_deployment("echo", platform.add_version("v1", python="/gone/bin/python"),
                            autoscale_config={"min_replicas": 2})
    scheduler = platform.scheduler()
    platform.wait_state("echo", "RUNNING")
    assert any("/gone/bin/python is missing" in line for line in scheduler.logs(USER, "echo"))
    pids = [r["pid"] for r in platform.replicas("echo")]
    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET desired = 'stopped' WHERE id = 'echo'")
    scheduler.kick()
    platform.wait_state("echo", "STOPPED")
    assert platform.replicas("echo") == []
    wait_for(lambda: not any(alive(pid) for pid in pids), 15, "the runners to exit")
    with pytest.raises(FailedPrecondition, match="deployment echo is STOPPED"):
        scheduler.route(USER, "echo")

    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET desired = 'running', updated_at = ? WHERE id = 'echo'", (now(),))
    scheduler.kick()
    platform.wait_state("echo", "RUNNING")
    pids = [r["pid"] for r in platform.replicas("echo")]
    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET desired = 'deleted' WHERE id = 'echo'")
    scheduler.kick()
    wait_for(lambda: platform.deployment("echo") is None, 15, "the deleted deployment's row to go")
    assert not any(alive(pid) for pid in pids)


def test_a_new_scheduler_readopts_running_replicas(platform: Platform) -> None:
    platform.add_deployment("echo", platform.add_version("v1"))
    old = platform.scheduler()
    platform.wait_state("echo", "RUNNING")
    [replica] = platform.replicas("echo")
    old.stop(stop_runners=False)  # as if the daemon died: the runners keep running
    with platform.store.tx() as db:  # and a row whose runner is long gone
        db.execute("INSERT INTO replicas (id, user_id, deployment_id, version_id, pid, address, state, "
                   "started_at) VALUES ('0123456789ab', ?, 'echo', 'v1', 999999, '127.0.0.1:9', 'READY', ?)",
                   (USER, now()))

    new = platform.scheduler()
    [adopted] = platform.replicas("echo")
    assert (adopted["id"], adopted["pid"], adopted["state"]) == (replica["id"], replica["pid"], "READY")
    assert platform.predict(new, "echo") == "v1:hi"
    platform.wait_state("echo", "RUNNING")


def test_rollout_serves_every_call(platform: Platform) -> None:
    platform.add_deployment("echo", platform.add_version("v1"), drain_seconds=1)
    platform.add_version("v2")
    scheduler = platform.scheduler()
    platform.wait_state("echo", "RUNNING")
    [old] = platform.replicas("echo")

    results: list[str] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                results.append(platform.predict(scheduler, "echo"))
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                failures.append(e)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(results) > 5, 10, "calls to v1")
        with platform.store.tx() as db:
            db.execute("UPDATE deployments SET version_id = 'v2' WHERE id = 'echo'")
        scheduler.kick()
        wait_for(lambda: platform.deployment("echo")["state"] == "UPDATING", 10, "the rollout to begin")
        platform.wait_state("echo", "RUNNING")
        wait_for(lambda: results[-1] == "v2:hi", 10, "calls to v2")
    finally:
        done.set()
        thread.join(15)
    assert failures == []
    assert results[0] == "v1:hi" and results[-1] == "v2:hi"
    assert [r["version_id"] for r in platform.replicas("echo")] == ["v2"]
    wait_for(lambda: not alive(old["pid"]), 15, "the old replica to exit")


def test_start_settings_roll_out_and_live_ones_do_not(platform: Platform) -> None:
    platform.add_deployment("echo", platform.add_version("v1"), drain_seconds=0)
    scheduler = platform.scheduler()
    platform.wait_state("echo", "RUNNING")
    [old] = platform.replicas("echo")
    assert old["spec"] == replica_spec("v1", {"drain_seconds": 0})

    live = {"drain_seconds": 3, "inference_logger": {"mode": "all"}, "autoscale_config": {"max_replicas": 2}}
    with platform.store.tx() as db:  # read by running replicas (or by the scheduler): nothing to roll
        db.execute("UPDATE deployments SET config_json = ? WHERE id = 'echo'", (json.dumps(live),))
    scheduler.kick()
    wait_for(lambda: scheduler.autoscaler.active, 5, "a pass with the new config")
    platform.wait_state("echo", "RUNNING")
    assert [(r["id"], r["pid"], r["state"]) for r in platform.replicas("echo")] == [(old["id"], old["pid"], "READY")]

    batched = {**live, "drain_seconds": 0, "inference_batcher": {"enabled": True, "max_batch_size": 4}}
    with platform.store.tx() as db:  # a runner flag: new replicas start with it, the old one leaves
        db.execute("UPDATE deployments SET config_json = ? WHERE id = 'echo'", (json.dumps(batched),))
    scheduler.kick()
    wait_for(lambda: [r["id"] != old["id"] for r in platform.replicas("echo")] == [True], 30,
             "the new replica alone")
    platform.wait_state("echo", "RUNNING")
    [new] = platform.replicas("echo")
    assert new["spec"] == replica_spec("v1", batched) != old["spec"]
    assert json.loads(new["settings_json"]) == {"inference_batcher": batched["inference_batcher"]}
    assert platform.predict(scheduler, "echo") == "v1:hi"
    wait_for(lambda: not alive(old["pid"]), 15, "the old replica to exit")


def test_a_replica_from_before_specs_is_readopted_with_the_current_settings(platform: Platform) -> None:
    platform.add_deployment("echo", platform.add_version("v1"), transformer={"enabled": False})
    old = platform.scheduler()
    platform.wait_state("echo", "RUNNING")
    [replica] = platform.replicas("echo")
    old.stop(stop_runners=False)
    with platform.store.tx() as db:  # as a daemon from before the spec column left it
        db.execute("UPDATE replicas SET spec = '', settings_json = '{}'")

    new = platform.scheduler()
    [adopted] = platform.replicas("echo")
    assert (adopted["id"], adopted["pid"]) == (replica["id"], replica["pid"])
    assert adopted["spec"] == replica_spec("v1", {"transformer": {"enabled": False}})
    assert json.loads(adopted["settings_json"]) == {"transformer": {"enabled": False}}
    new.kick()
    platform.wait_state("echo", "RUNNING")
    assert [r["id"] for r in platform.replicas("echo")] == [replica["id"]]


def test_rollout_stops_the_old_replica_first_when_both_do_not_fit(platform: Platform,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_DEPLOY_FAKE_GPUS", "1")
    platform.add_deployment("gpu", platform.add_version("g1", compute={"num_accelerators": 1}), drain_seconds=0)
    platform.add_version("g2", compute={"num_accelerators": 1})
    scheduler = platform.scheduler(host=detect())
    platform.wait_state("gpu", "RUNNING")
    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET version_id = 'g2' WHERE id = 'gpu'")
    scheduler.kick()
    wait_for(lambda: [(r["version_id"], r["state"]) for r in platform.replicas("gpu")] == [("g2", "READY")],
             30, "the new version to take the only GPU")
    platform.wait_state("gpu", "RUNNING")
    [replica] = platform.replicas("gpu")
    assert replica["gpus"] == "0"
    assert platform.predict(scheduler, "gpu") == "g2:hi"
