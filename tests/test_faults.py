"""Faults under load: calls through one Client while the daemon or a replica is killed (-9).

Real daemon and runner processes. Each test counts the calls that failed while 8 threads
call the model; the tests share one daemon, and those that kill the daemon run last.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import write_model
from daemon_helpers import alive, daemon_pid, deployed_echo, wait_for

from jupyter_deploy import Client, Deployment, Model, RunnerError
from jupyter_deploy.client import _api

pytestmark = pytest.mark.timeout(240)

CALLERS = 8

TWO_SHAPES = '''
from typing import Iterator
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo: " + text

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{text}{i}"
'''


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with deployed_echo(tmp_path_factory, "faults") as (client, home):
        yield client, home


class Load:
    """``CALLERS`` threads calling ``call()`` in a loop until stopped; counts answers and failures."""

    def __init__(self, call):
        self.call, self.answers, self.failures = call, 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(CALLERS)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.call()
                self.answers += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(e)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def report(self, what: str) -> str:
        return f"{what}: {len(self.failures)} failed of {self.answers + len(self.failures)} calls"


def replicas(client: Client, deployment_id: str) -> list[dict]:
    return [r for r in Deployment(deployment_id, client=client).status["replicas"]
            if r["state"] == "READY"]


def test_a_killed_replica_of_two_costs_no_call(echo, tmp_path):
    client, _ = echo
    client.upload_model(write_model(tmp_path, TWO_SHAPES, model_id="echo2"))
    client.model("echo2").deploy("echo2", autoscale_config={"min_replicas": 2, "max_replicas": 2},
                                 timeout=120)
    wait_for(lambda: len(replicas(client, "echo2")) == 2, 60, "two READY replicas")
    model = client.model("echo2")
    model.predict("warm", deployment_id="echo2")
    with Load(lambda: model.predict("x", deployment_id="echo2")) as load:
        time.sleep(0.5)
        os.kill(replicas(client, "echo2")[0]["pid"], signal.SIGKILL)
        time.sleep(1.5)
    print(load.report("one of two replicas killed"))
    assert not load.failures, load.failures[:3]
    assert load.answers > 0

    # Streams too: one that reached no replica goes on to the other (one that had begun to
    # answer would fail: the model saw it).
    wait_for(lambda: len(replicas(client, "echo2")) == 2, 60, "two READY replicas again")
    for _ in range(4):  # both replicas in the cached route
        assert list(model.generate("y", deployment_id="echo2")) == ["y0", "y1", "y2"]
    os.kill(replicas(client, "echo2")[0]["pid"], signal.SIGKILL)
    for _ in range(10):  # turns over the route: some go to the dead replica first
        assert list(model.generate("y", deployment_id="echo2")) == ["y0", "y1", "y2"]


def test_calls_wait_while_the_only_replica_restarts(echo):
    client, _ = echo
    model = client.model("echo")
    model.predict("warm", deployment_id="echo")
    pid = replicas(client, "echo")[0]["pid"]
    with Load(lambda: model.predict("x", deployment_id="echo")) as load:
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: any(r["pid"] != pid for r in replicas(client, "echo")), 60,
                 "the replica to be restarted")
        before = load.answers
        wait_for(lambda: load.answers > before + 50, 30, "calls to go through again")
    print(load.report("the only replica killed"))
    assert not load.failures, load.failures[:3]


def test_a_client_outlives_a_daemon_restart(echo):
    client, home = echo
    model = client.model("echo")
    model.predict("warm", deployment_id="echo")
    old_address = client.address
    with Load(lambda: model.predict("x", deployment_id="echo")) as load:
        time.sleep(0.3)
        os.kill(daemon_pid(home), signal.SIGKILL)
        time.sleep(3)
    print(load.report("daemon killed, route cached"))
    assert not load.failures, load.failures[:3]
    assert load.answers > 0

    Client()  # a new daemon, on a new port, over the same state
    assert "echo" in [d.id for d in client.list_deployments()]  # the old Client found it
    assert client.address != old_address
    assert Model(model_id="echo", client=client).predict("hi", deployment_id="echo").endswith("hi")

    # Killed again, with no one to start it: the old Client starts one, as Client() would.
    os.kill(daemon_pid(home), signal.SIGKILL)
    wait_for(lambda: "echo" in [d.id for d in client.list_deployments()], 30, "a new daemon")
    assert model.predict("again", deployment_id="echo").endswith("again")



def test_a_call_no_replica_answers_fails_clearly(echo, monkeypatch):
    client, home = echo
    fixed = Client(autostart=False)  # nothing starts a daemon for it
    model = fixed.model("echo")
    model.predict("warm", deployment_id="echo")
    pid = replicas(fixed, "echo")[0]["pid"]
    monkeypatch.setattr(_api, "REPLICA_WAIT", 1.0)
    os.kill(daemon_pid(home), signal.SIGKILL)  # no one restarts the replica
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, "the replica to die")
    started = time.monotonic()
    with pytest.raises(RunnerError, match="no replica answered within 1 s") as e:
        model.predict("x", deployment_id="echo")
    assert e.value.code == "UNAVAILABLE" and time.monotonic() - started < 10
