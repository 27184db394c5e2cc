"""The same-host data plane: model calls over the runners' ipc sockets (``runner._ipc``, ``client._ipc``).

A real daemon and real runner processes. A caller on the daemon's host calls over ipc by
default; these tests check it gives what gRPC gives (answers, errors, access records), that
the route token is checked there too, that a killed replica's calls go on to the other
replica, and that ``JUPYTER_DEPLOY_DATA_PLANE=grpc`` turns it off.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import write_model
from daemon_helpers import alive, daemon_pid, isolated_home, wait_for

from jupyter_deploy import Client, Deployment, InputError, ModelError, RunnerError
from jupyter_deploy.client._ipc import IpcTransport
from jupyter_deploy.client._runner_client import GrpcTransport
from jupyter_deploy.proto import runner_pb2 as pb

pytestmark = pytest.mark.timeout(300)

MODEL = '''
import threading
import time
from typing import Iterator
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    def load_model(self):
        self.sizes = []
        self.lock = threading.Lock()

    @ModelClass.method
    def predict(self, text: str) -> str:
        if text == "boom":
            raise ValueError("no boom here")
        return "echo: " + text

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            if text == "boom" and i == 1:
                raise KeyError("stream broke")
            yield f"{text}{i}"

    @ModelClass.method(batch=True)
    def double(self, x: list[int]) -> list[int]:
        with self.lock:
            self.sizes.append(len(x))
        time.sleep(0.02)
        return [2 * v for v in x]

    @ModelClass.method
    def batch_sizes(self) -> list[int]:
        return list(self.sizes)

    @ModelClass.method
    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
'''


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """The model deployed as ``ipc`` with two replicas and a batcher; yields (client, home)."""
    with isolated_home(tmp_path_factory, "ipc") as home:
        client = Client()
        client.upload_model(write_model(tmp_path_factory.mktemp("ipc_model"), MODEL, model_id="ipcecho"))
        client.model("ipcecho").deploy("ipc", autoscale_config={"min_replicas": 2, "max_replicas": 2},
                                       inference_batcher={"max_batch_size": 16, "max_latency_ms": 50},
                                       timeout=120)
        wait_for(lambda: len(_ready(client)) == 2, 60, "two READY replicas")
        try:
            yield client, home
        finally:
            client.close()


def _ready(client: Client) -> list[dict]:
    return [r for r in Deployment("ipc", client=client).status["replicas"] if r["state"] == "READY"]


def _transports(model) -> list:
    routed = model._transport("ipc")
    routed._current()
    return list(routed._transports)


def _grpc_model(monkeypatch):
    """A model of a Client that resolved its first route with JUPYTER_DEPLOY_DATA_PLANE=grpc."""
    monkeypatch.setenv("JUPYTER_DEPLOY_DATA_PLANE", "grpc")
    model = Client().model("ipcecho")
    model.predict("warm", deployment_id="ipc")
    monkeypatch.delenv("JUPYTER_DEPLOY_DATA_PLANE")  # decided once per client: it stays on gRPC
    return model


def _outcome(call):
    try:
        return "ok", call()
    except Exception as e:  # noqa: BLE001 - compared between the planes
        return type(e).__name__, str(e), getattr(e, "code", None)


def test_a_model_call_goes_over_ipc_by_default(echo):
    client, _ = echo
    model = client.model("ipcecho")
    assert model.predict("hi", deployment_id="ipc") == "echo: hi"
    transports = _transports(model)
    assert len(transports) == 2 and all(isinstance(t, IpcTransport) for t in transports)
    assert all(t.endpoint.startswith("ipc://@jupyter_deploy-") for t in transports)
    for _ in range(4):  # both replicas, in turn
        assert model.predict("again", deployment_id="ipc") == "echo: again"
    # Each replica's socket answered this thread (none fell back to gRPC).
    assert all(getattr(t._local, "conn", None) is not None and not t._unreachable for t in transports)


def test_data_plane_grpc_turns_ipc_off(echo, monkeypatch):
    model = _grpc_model(monkeypatch)
    transports = _transports(model)
    assert transports and all(type(t) is GrpcTransport for t in transports)
    model._transport("ipc")._current(refresh=True)  # resolved again: still gRPC
    assert all(type(t) is GrpcTransport for t in model._transport("ipc")._transports)


def test_answers_and_errors_are_those_of_grpc(echo, monkeypatch):
    client, _ = echo
    over_grpc, over_ipc = _grpc_model(monkeypatch), client.model("ipcecho")
    calls = [
        lambda m: m.predict("hi", deployment_id="ipc"),
        lambda m: m.predict("boom", deployment_id="ipc"),
        lambda m: list(m.generate("x", n=4, deployment_id="ipc")),
        lambda m: list(m.generate("boom", deployment_id="ipc")),
        lambda m: m.double(21, deployment_id="ipc"),
        lambda m: m.slow(0.01, deployment_id="ipc"),
    ]
    for call in calls:
        assert _outcome(lambda: call(over_ipc)) == _outcome(lambda: call(over_grpc))
    assert all(isinstance(t, IpcTransport) for t in _transports(over_ipc))
    assert all(type(t) is GrpcTransport for t in _transports(over_grpc))
    with pytest.raises(ModelError, match="no boom here") as raised:
        over_ipc.predict("boom", deployment_id="ipc")
    assert raised.value.type == "ValueError" and "predict" in raised.value.remote_traceback
    with pytest.raises(ModelError, match="stream broke"):
        list(over_ipc.generate("boom", deployment_id="ipc"))
    # Bad input the client cannot catch (a method the runner does not serve) is refused alike.
    ipc = _transports(over_ipc)[0]
    bad = pb.PredictRequest(method="nope")
    with pytest.raises(InputError, match="unknown method 'nope'") as by_ipc:
        ipc.unary(bad)
    with pytest.raises(InputError) as by_grpc:
        ipc.grpc.unary(bad)
    assert str(by_ipc.value) == str(by_grpc.value)


def test_batched_calls_over_ipc_reach_the_batcher_together(echo):
    client, _ = echo
    models = [client.model("ipcecho") for _ in range(16)]
    results: list = [None] * 64

    def run(k: int) -> None:
        for i in range(k, 64, 16):
            results[i] = models[k].double(i, deployment_id="ipc")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [2 * i for i in range(64)]
    reader = client.model("ipcecho")
    sizes = [s for _ in range(2) for s in reader.batch_sizes(deployment_id="ipc")]  # both replicas
    assert max(sizes) > 1, sizes


def test_a_slow_call_does_not_hold_up_the_others(echo):
    client, _ = echo
    model = client.model("ipcecho")
    transport = _transports(model)[0]
    slow_done = threading.Event()

    def slow() -> None:
        request = pb.PredictRequest(method="slow")
        request.args.add(key="seconds").value.float = 3.0
        IpcTransport(transport.endpoint, transport._token.decode(), None, transport.grpc).unary(request)
        slow_done.set()

    threading.Thread(target=slow, daemon=True).start()
    time.sleep(0.3)
    for _ in range(3):  # the same replica answers while its slow call runs
        request = pb.PredictRequest(method="predict")
        request.args.add(key="text").value.str = "quick"
        assert transport.unary(request).str == "echo: quick"
    assert not slow_done.is_set()
    assert slow_done.wait(30)


@pytest.mark.parametrize("token", ["", "forged", "x.y.z"])
def test_a_bad_token_is_refused_over_ipc(echo, token):
    client, _ = echo
    good = _transports(client.model("ipcecho"))[0]
    request = pb.PredictRequest(method="predict")
    request.args.add(key="text").value.str = "hi"
    bad = IpcTransport(good.endpoint, token, None, good.grpc)
    with pytest.raises(RunnerError, match="call refused") as raised:
        bad.unary(request)
    assert raised.value.code == "UNAUTHENTICATED"
    with pytest.raises(RunnerError, match="call refused"):
        list(bad.server_stream(pb.PredictRequest(method="generate")))


def test_a_tampered_token_is_refused_over_ipc(echo):
    client, _ = echo
    good = _transports(client.model("ipcecho"))[0]
    token = good._token.decode()
    payload, signature = token.rsplit(".", 1)
    forged = f"{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    request = pb.PredictRequest(method="predict")
    request.args.add(key="text").value.str = "hi"
    with pytest.raises(RunnerError, match="call refused") as raised:
        IpcTransport(good.endpoint, forged, None, good.grpc).unary(request)
    assert raised.value.code == "UNAUTHENTICATED"


def test_every_ipc_call_is_in_the_access_log(echo):
    client, _ = echo
    deployment = Deployment("ipc", client=client)
    model = client.model("ipcecho")
    model.predict("warm", deployment_id="ipc")
    since = time.time()
    for i in range(6):
        model.predict(f"log{i}", deployment_id="ipc")
    assert list(model.generate("g", n=2, deployment_id="ipc")) == ["g0", "g1"]
    with pytest.raises(ModelError):
        model.predict("boom", deployment_id="ipc")

    box = []

    def records() -> bool:
        box[:] = [deployment.access_logs(since=since)]
        return len(box[0]) >= 8

    wait_for(records, 20, "8 access records")
    time.sleep(0.5)  # and no more: each call is recorded once
    df = deployment.access_logs(since=since)
    assert len(df) == 8
    assert sorted(df.method) == sorted(["predict"] * 7 + ["generate"])
    assert sorted(df.status) == sorted(["OK"] * 7 + ["UNKNOWN"])
    assert set(df.caller) == {"local"}
    assert df.request_id.is_unique


def test_a_killed_replica_of_two_costs_no_call(echo):
    client, _ = echo
    model = client.model("ipcecho")
    model.predict("warm", deployment_id="ipc")
    assert all(isinstance(t, IpcTransport) for t in _transports(model))
    answers, failures = [0], []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                assert model.predict("x", deployment_id="ipc") == "echo: x"
                answers[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(_ready(client)[0]["pid"], signal.SIGKILL)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(90)
    assert not failures, failures[:3]
    assert answers[0] > 0
    # The replica comes back, and calls reach it over ipc again.
    wait_for(lambda: len(_ready(client)) == 2, 60, "two READY replicas again")
    fresh = client.model("ipcecho")
    assert fresh.predict("back", deployment_id="ipc") == "echo: back"
    assert all(isinstance(t, IpcTransport) for t in _transports(fresh))


def test_dropped_transports_leave_no_socket_open(echo):
    """Routes are renewed, threads end: each drops its sockets, or the process runs out of them."""
    client, _ = echo
    good = _transports(client.model("ipcecho"))[0]
    request = pb.PredictRequest(method="predict")
    request.args.add(key="text").value.str = "hi"

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    def once() -> None:
        assert IpcTransport(good.endpoint, good._token.decode(), None, good.grpc).unary(request).str == "echo: hi"

    once()
    before = open_files()
    for _ in range(200):
        once()
    for _ in range(20):
        t = threading.Thread(target=once)
        t.start()
        t.join(30)
    assert open_files() < before + 20


def test_a_replica_that_stops_answering_is_taken_as_gone(echo):
    """A runner that hangs (SIGSTOP) keeps its socket open: the call's ping finds it silent."""
    client, _ = echo
    wait_for(lambda: len(_ready(client)) == 2 and len(_transports(client.model("ipcecho"))) == 2, 60,
             "a route to both replicas")
    transports = _transports(client.model("ipcecho"))
    request = pb.PredictRequest(method="predict")
    request.args.add(key="text").value.str = "hi"
    for t in transports:
        assert t.unary(request).str == "echo: hi"
    pid = _ready(client)[0]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        outcomes = []
        for t in transports:
            started = time.monotonic()
            outcomes.append((_outcome(lambda: t.unary(request).str)[:2], time.monotonic() - started < 30))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert sorted(o[0][0] for o in outcomes) == ["RunnerError", "ok"], outcomes
    assert all(o[1] for o in outcomes)
    failed = next(o[0][1] for o in outcomes if o[0][0] == "RunnerError")
    assert failed.startswith("UNAVAILABLE") and "stopped answering" in failed


def test_a_restarted_daemon_routes_over_ipc_to_the_replicas_it_adopted(echo):
    """Last: it kills the daemon. The new one learns each adopted replica's endpoint again."""
    client, home = echo
    before = sorted(t.endpoint for t in _transports(client.model("ipcecho")))
    pid = daemon_pid(home)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 20, "the daemon to die")
    fresh = Client()  # starts a new daemon, which adopts the running replicas
    model = fresh.model("ipcecho")
    wait_for(lambda: _outcome(lambda: model.predict("again", deployment_id="ipc")) == ("ok", "echo: again"),
             60, "a call through the new daemon")
    transports = _transports(model)
    assert all(isinstance(t, IpcTransport) for t in transports)
    assert sorted(t.endpoint for t in transports) == before
    fresh.close()
