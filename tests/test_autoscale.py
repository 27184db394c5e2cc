"""Autoscaling and scale to zero on the local backend: a real daemon, real runners, calls over gRPC."""

from __future__ import annotations

import threading

import pytest
from daemon_helpers import alive, isolated_home, wait_for, wait_for_state
from IPython.core.error import UsageError

from jupyter_deploy import Client, ControlPlaneError, Nodepool
from jupyter_deploy.notebook.magics import _check_replica_flags
from jupyter_deploy.notebook.widgets import DeploymentCard

pytestmark = pytest.mark.timeout(240)

SLEEPY = '''
import os
import time
from jupyter_deploy import ModelClass


class Sleepy(ModelClass):
    @ModelClass.method
    def work(self, seconds: float = 0.0) -> int:
        """Sleep, then say which process served the call."""
        time.sleep(seconds)
        return os.getpid()
'''


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with isolated_home(tmp_path_factory, "autoscale_home"):
        client = Client()
        for model_id in ("busy", "idle", "cfg"):
            root = tmp_path_factory.mktemp(model_id)
            (root / "1").mkdir()
            (root / "1" / "model.py").write_text(SLEEPY)
            (root / "config.yaml").write_text(f"model:\n  id: {model_id}\n")
            (root / "requirements.txt").write_text("")
            client.upload_model(root)
        yield client


def nodepool(client: Client) -> Nodepool:
    return Nodepool("local", compute_cluster_id="local", client=client)


def ready_replicas(deployment) -> list[dict]:
    return [r for r in deployment.status["replicas"] if r["state"] == "READY"]


def test_scale_up_under_concurrent_load_then_down_when_it_falls(client):
    deployment = nodepool(client).create_deployment(
        "busy", worker={"model": {"id": "busy"}}, drain_seconds=0,
        autoscale_config={"min_replicas": 1, "max_replicas": 3, "target_in_flight_per_replica": 1,
                          "scale_up_delay_seconds": 0.5, "scale_down_delay_seconds": 1})
    deployment.wait_until_ready(120)
    model = client.model("busy")
    served_by: set[int] = set()
    failures: list[BaseException] = []
    done = threading.Event()

    def load() -> None:
        for _ in range(2000):  # bounded; ends sooner when the test has seen enough
            if done.is_set():
                return
            try:
                served_by.add(model.work(0.05))
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                failures.append(e)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # Four calls in flight for one replica, target one each: more replicas, and calls reach them.
        wait_for(lambda: len(ready_replicas(deployment)) >= 2 and len(served_by) >= 2, 90,
                 "added replicas to serve calls")
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert failures == []
    status = deployment.status
    # STARTING while a third replica the load asked for is still coming up: the state counts
    # ready replicas against the number wanted.
    assert status["state"] in ("RUNNING", "STARTING") and 2 <= status["autoscale"]["wanted"] <= 3

    # No load: back to min_replicas, and the one left still serves.
    wait_for(lambda: len(deployment.status["replicas"]) == 1 and deployment.status["autoscale"]["wanted"] == 1,
             60, "the scale-down to one replica")
    [left] = deployment.status["replicas"]
    assert model.work() == left["pid"]
    deployment.delete()


def test_scale_to_zero_then_calls_wake_it(client):
    deployment = nodepool(client).create_deployment(
        "idle", worker={"model": {"id": "idle"}}, drain_seconds=0,
        autoscale_config={"min_replicas": 0, "max_replicas": 1, "scale_to_zero_delay_seconds": 1})
    deployment.wait_until_ready(120)
    model = client.model("idle")
    first = model.work()  # the route to this replica is cached
    wait_for(lambda: deployment.status["state"] == "IDLE" and not deployment.status["replicas"], 60,
             "the deployment to scale to zero")
    wait_for(lambda: not alive(first), 15, "its runner to exit")
    assert deployment.wait_until_ready(1) is deployment  # IDLE is ready: a call starts a replica

    # Three callers at once, one through the stale cached route: all wait for one new replica.
    results: list[int] = []
    failures: list[BaseException] = []

    def call() -> None:
        try:
            results.append(model.work())
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert failures == [] and len(results) == 3
    assert len(set(results)) == 1 and first not in results
    status = deployment.status
    assert status["state"] == "RUNNING" and len(status["replicas"]) == 1
    cold = status["autoscale"]["last_cold_start_seconds"]
    assert cold is not None and cold > 0
    card = DeploymentCard(deployment)
    assert f"last cold start from IDLE {cold:.2f} s" in card.summary()
    card.close()
    deployment.delete()


def test_bad_autoscale_config_is_refused_with_every_problem_on_its_own_line(client):
    with pytest.raises(ControlPlaneError) as e:
        nodepool(client).create_deployment("cfg", worker={"model": {"id": "cfg"}}, autoscale_config={
            "min_replicas": 2, "max_replicas": 1, "scale_up_delay_seconds": "soon", "burst": True})
    lines = str(e.value).splitlines()
    assert "deployment config: autoscale_config.max_replicas: 1 is below min_replicas 2" in lines
    assert any(line.startswith("deployment config: autoscale_config.scale_up_delay_seconds: expected a number")
               for line in lines)
    assert any("autoscale_config.burst: unknown field" in line for line in lines)
    with pytest.raises(UsageError, match="--max-replicas 1 is below min_replicas 2"):
        _check_replica_flags(2, 1)  # %%deploy says the same, before uploading anything
    with pytest.raises(UsageError, match="--min-replicas must be at least 0"):
        _check_replica_flags(-1, None)


def test_max_replicas_follows_min_replicas_unless_given(client):
    deployment = nodepool(client).create_deployment("cfg", worker={"model": {"id": "cfg"}},
                                                    autoscale_config={"min_replicas": 2})
    deployment.stop()  # only the config matters here
    assert deployment.config["autoscale_config"]["max_replicas"] == 2
    deployment.update(autoscale_config={"min_replicas": 3})  # a raised minimum lifts the maximum
    assert deployment.config["autoscale_config"]["max_replicas"] == 3
    with pytest.raises(ControlPlaneError, match="max_replicas: 2 is below min_replicas 3"):
        deployment.update(autoscale_config={"max_replicas": 2})
    deployment.delete()


def test_the_scheduler_state_is_derived_again_after_a_restart(client):
    """An IDLE deployment stays IDLE across a daemon restart, and a call still wakes it."""
    nodepool(client).create_deployment(
        "idle", worker={"model": {"id": "idle"}}, drain_seconds=0,
        autoscale_config={"min_replicas": 0, "scale_to_zero_delay_seconds": 0.5})
    wait_for_state(client, "idle", "IDLE", 60)
    from jupyter_deploy.client._daemon import stop

    stop(address=client.address, timeout=60)
    fresh = Client()
    again = fresh.deployment("idle")
    assert again.status["state"] == "IDLE" and again.status["replicas"] == []
    assert isinstance(fresh.model("idle").work(), int)
    assert again.status["state"] == "RUNNING"
    again.delete()


SLOW_LOAD = '''
import os
import time
from jupyter_deploy import ModelClass


class SlowLoad(ModelClass):
    def load_model(self):
        time.sleep(3)  # a wake from zero takes a while: callers wait meanwhile

    @ModelClass.method
    def work(self) -> int:
        return os.getpid()
'''


def test_many_callers_waiting_on_a_wake_leave_the_daemon_free(client, tmp_path):
    # More callers than the daemon has request threads (32): while they wait for the
    # replica, the daemon still answers other calls at once (route resolution says
    # "retry after" instead of holding a thread per waiting caller).
    client = Client()  # the module's home (its fixture sets it), whose daemon a test above restarts
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.py").write_text(SLOW_LOAD)
    (tmp_path / "config.yaml").write_text("model:\n  id: slowwake\n")
    (tmp_path / "requirements.txt").write_text("")
    client.upload_model(tmp_path)
    deployment = nodepool(client).create_deployment(
        "slowwake", worker={"model": {"id": "slowwake"}}, drain_seconds=0,
        autoscale_config={"min_replicas": 0, "max_replicas": 1, "scale_to_zero_delay_seconds": 1})
    wait_for(lambda: deployment.status["state"] == "IDLE" and not deployment.status["replicas"], 60,
             "the deployment to scale to zero")
    # Awake, it stays up while the callers come (a live setting: no replica is replaced).
    deployment.update(autoscale_config={"scale_to_zero_delay_seconds": 600})

    callers = [Client(address=client.address) for _ in range(40)]
    results: list[int] = []
    failures: list[BaseException] = []

    def call(c: Client) -> None:
        try:
            results.append(c.model("slowwake").work())
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=call, args=(c,), daemon=True) for c in callers]
    for t in threads:
        t.start()
    wait_for_state(client, "slowwake", lambda state: state != "IDLE", 30, "a call to wake the deployment")
    # Answered while the replica is still loading: no daemon thread is held by a waiting caller.
    seen = {d.id: d.state for d in client.list_deployments()}
    assert seen["slowwake"] in ("STARTING", "UPDATING"), seen
    for t in threads:
        t.join(150)
    assert failures == [] and len(results) == 40 and len(set(results)) == 1
    deployment.delete()
    for c in (*callers, client):
        c.close()
