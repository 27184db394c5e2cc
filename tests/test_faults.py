"""Faults under load: calls through one Client while the daemon or a replica is killed (-9).

Real daemon and runner processes. Each test counts the calls that failed while 8 threads
call the model; the tests share one daemon, and those that kill the daemon run last.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import grpc
import pytest
from conftest import write_model
from daemon_helpers import alive, daemon_pid, deployed_echo, wait_for

from jupyter_deploy import Client, Deployment, Model, NotFoundError, RunnerError
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
        # The daemon was killed last, and the replicas it left run on: a new one re-adopts them,
        # and stopping it with its deployments deleted leaves none.
        shut_down_leaving_no_runner(Client(), home)


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


# ------------------------------------------------------------ faults in a home of their own
# Each test below runs its own daemon, and ends by deleting its deployments and shutting the
# daemon down: then no runner process of its home may be left.

SLOW_LOAD = '''
import time
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    def load_model(self):
        time.sleep(2)  # a rollout that takes a while: the daemon is killed in the middle of it

    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo v2: " + text
'''

STREAMING = '''
import os
import time
from typing import Iterator
from jupyter_deploy import ModelClass


class Slow(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo: " + text

    @ModelClass.method
    def generate(self, n: int = 3) -> Iterator[str]:
        yield str(os.getpid())  # which replica serves this stream
        for i in range(n):
            time.sleep(0.05)
            yield str(i)
'''


def runner_pids(home) -> set[int]:
    """Runner processes of ``home``: ``jupyter_deploy.runner`` with the home in their command line."""
    found = set()
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "jupyter_deploy.runner" in cmdline and str(home) in cmdline:
            found.add(int(proc))
    return found


def shut_down_leaving_no_runner(client: Client, home) -> None:
    """Delete every deployment, stop the daemon (and its runners); no runner of ``home`` may be left."""
    from jupyter_deploy.proto import control_pb2 as cpb

    assert runner_pids(home), "the test left no runner to stop (it should have one)"
    for d in client.list_deployments():
        Deployment(d.id, client=client).delete()
    wait_for(lambda: not client.list_deployments(), 60, "the deployments to go")
    pid = daemon_pid(home)
    client.call("Shutdown", cpb.ShutdownRequest(stop_runners=True))
    wait_for(lambda: not alive(pid), 30, "the daemon to stop")
    wait_for(lambda: not runner_pids(home), 15, f"no runner of {home} to be left")


@pytest.fixture
def own_home(tmp_path_factory):
    from daemon_helpers import isolated_home

    with isolated_home(tmp_path_factory, "faults_own") as home:
        yield home


def test_a_daemon_killed_during_a_rollout_costs_no_call(own_home, tmp_path):
    home = own_home
    client = Client()
    folder = write_model(tmp_path / "roll", TWO_SHAPES, model_id="roll")
    client.deploy(folder, model_id="roll", deployment_id="roll", timeout=120)
    model = client.model("roll")
    model.predict("warm", deployment_id="roll")
    with Load(lambda: model.predict("x", deployment_id="roll")) as load:
        time.sleep(0.3)
        write_model(folder, SLOW_LOAD, model_id="roll")
        rollout = client.deploy(folder, model_id="roll", deployment_id="roll", wait=False)
        committed = Deployment("roll", client=client).refresh().resource
        assert Deployment("roll", client=client).state == "UPDATING"
        os.kill(daemon_pid(home), signal.SIGKILL)  # the new replica is loading: no switch yet
        time.sleep(1.0)
        Client()  # a new daemon over the same state, as the next kernel would start it
        v2 = rollout.rollout.version.number
        wait_for(lambda: (s := Deployment("roll", client=client).status)["state"] == "RUNNING"
                 and s["version_number"] == v2
                 and all(r["version_id"] == s["version_id"] for r in s["replicas"]), 90,
                 "the rollout to finish under the new daemon")
        before = load.answers
        wait_for(lambda: load.answers > before + 50, 30, "calls to reach the new version")
    print(load.report("daemon killed during a rollout"))
    assert not load.failures, load.failures[:3]
    after = Deployment("roll", client=client).refresh().resource
    assert json.loads(after.config_json) == json.loads(committed.config_json)  # as committed
    assert model.predict("hi", deployment_id="roll") == "echo v2: hi"
    shut_down_leaving_no_runner(client, home)


def test_a_runner_killed_during_a_stream_fails_the_stream_clearly(own_home, tmp_path):
    from jupyter_deploy import DeployError

    home = own_home
    client = Client()
    client.deploy(write_model(tmp_path / "slow", STREAMING, model_id="slow"), deployment_id="slow",
                  autoscale_config={"min_replicas": 2, "max_replicas": 2}, timeout=120)
    wait_for(lambda: len(replicas(client, "slow")) == 2, 60, "two READY replicas")
    model = client.model("slow")
    stream = model.generate(1000, deployment_id="slow")
    pid = int(next(stream))
    assert next(stream) == "0"
    os.kill(pid, signal.SIGKILL)
    outcome: list = []

    def drain() -> None:
        try:
            outcome.append(sum(1 for _ in stream))
        except Exception as e:  # noqa: BLE001 - judged below
            outcome.append(e)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "the stream hangs after its replica was killed"
    error = outcome[0]
    print(f"runner killed mid-stream: the stream ended with {error!r}")
    assert isinstance(error, DeployError) and "the replica serving this stream went away" in str(error), error
    assert getattr(error, "code", "") == "UNAVAILABLE", error

    failures = []
    for i in range(20):  # the other replica serves; the killed one is restarted meanwhile
        try:
            assert model.predict(str(i), deployment_id="slow") == f"echo: {i}"
            assert list(model.generate(2, deployment_id="slow"))[1:] == ["0", "1"]
        except Exception as e:  # noqa: BLE001 - every failure counts
            failures.append(e)
    print(f"runner killed mid-stream: {len(failures)} failed of 40 later calls")
    assert not failures, failures[:3]
    shut_down_leaving_no_runner(client, home)


def test_a_daemon_killed_during_an_upload_commits_nothing_and_leaves_no_temp_file(own_home, tmp_path):
    import hashlib

    from jupyter_deploy.client._upload import describe_folder, pack_folder
    from jupyter_deploy.proto import control_pb2 as cpb

    home = own_home
    client = Client()
    folder = write_model(tmp_path / "big", TWO_SHAPES, model_id="big")
    (folder / "1" / "weights.bin").write_bytes(os.urandom(8 << 20))
    data = pack_folder(folder)
    header = cpb.UploadHeader(model=cpb.ModelRef(model_id="big"), sha256=hashlib.sha256(data).hexdigest(),
                              size=len(data), description=describe_folder(folder)[0], python=sys.executable)
    halfway, killed = threading.Event(), threading.Event()

    def chunks():
        yield cpb.UploadChunk(header=header)
        yield cpb.UploadChunk(data=data[:1 << 20])
        halfway.set()
        killed.wait(30)
        for start in range(1 << 20, len(data), 1 << 20):
            yield cpb.UploadChunk(data=data[start:start + (1 << 20)])

    failed: list = []

    def upload() -> None:  # the stub itself: Client.call would try again on the next daemon
        try:
            client._stub.UploadModel(chunks(), timeout=60, metadata=client._metadata)
        except Exception as e:  # noqa: BLE001 - judged below
            failed.append(e)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert halfway.wait(30)
    wait_for(lambda: any((home / "blobs" / "tmp").iterdir()), 10, "the partial upload's temp file")
    os.kill(daemon_pid(home), signal.SIGKILL)
    killed.set()
    uploader.join(60)
    assert len(failed) == 1 and failed[0].code() == grpc.StatusCode.UNAVAILABLE, failed
    print(f"daemon killed during an upload: the upload failed with {failed[0].code().name}")

    fresh = Client()  # a new daemon: what the killed one left is cleaned up before it serves
    assert list((home / "blobs" / "tmp").iterdir()) == []
    assert not (home / "blobs" / header.sha256[:2] / header.sha256).exists()
    with pytest.raises(NotFoundError):
        fresh.model("big").list_versions()
    version = fresh.upload_model(folder)  # the retry
    assert version.number == 1 and version.proto.sha256 == header.sha256
    assert (home / "blobs" / header.sha256[:2] / header.sha256).stat().st_size == len(data)
    fresh.deploy(folder, deployment_id="big", timeout=120)  # gives shut_down_leaving_no_runner a runner
    shut_down_leaving_no_runner(fresh, home)
