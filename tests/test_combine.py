"""Concurrent unary calls over gRPC, combined into PredictMany RPCs (``client._combine``,
``RunnerService.predict_many``).

A real daemon and real runner processes, called over gRPC (``JUPYTER_DEPLOY_DATA_PLANE=grpc``,
as a caller on another host would). Combined calls must each get what a plain Predict gives
(its answer, its error), keep their own route token and access record, reach a batcher
together, and not wait for each other's slow calls.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent import futures

import grpc
import pytest
from conftest import write_model
from daemon_helpers import isolated_home, wait_for

from jupyter_deploy import Client, Deployment, ModelError, _wire
from jupyter_deploy.client._combine import Combiner
from jupyter_deploy.client._runner_client import GrpcTransport
from jupyter_deploy.proto import runner_pb2 as pb
from jupyter_deploy.proto import runner_pb2_grpc

pytestmark = pytest.mark.timeout(300)

MODEL = '''
import threading
import time
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    def load_model(self):
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.sizes = []

    @ModelClass.method
    def predict(self, text: str) -> str:
        if text.startswith("boom"):
            raise ValueError("no " + text)
        return "echo: " + text

    @ModelClass.method
    def slow(self, seconds: float) -> int:
        """Sleep; return how many calls were inside at once, at most, so far."""
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(seconds)
        with self.lock:
            self.inside -= 1
            return self.most

    @ModelClass.method(batch=True)
    def double(self, x: list[int]) -> list[int]:
        with self.lock:
            self.sizes.append(len(x))
        time.sleep(0.02)
        return [2 * v for v in x]

    @ModelClass.method
    def batch_sizes(self) -> list[int]:
        return list(self.sizes)
'''

THREADS = 16


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """The model deployed as ``comb`` (one replica, a batcher), called over gRPC; yields the client."""
    with isolated_home(tmp_path_factory, "combine", JUPYTER_DEPLOY_DATA_PLANE="grpc") as home:
        client = Client()
        client.upload_model(write_model(tmp_path_factory.mktemp("combine_model"), MODEL, model_id="combecho"))
        client.model("combecho").deploy("comb", inference_batcher={"max_batch_size": 16, "max_latency_ms": 50},
                                        timeout=120)
        try:
            yield client, home
        finally:
            client.close()


def _together(fn, n: int = THREADS) -> list:
    """``fn(i)`` for i in range(n), each on a thread of its own, all started at once; the
    outcomes ("ok", value) or (exception type, message), in order."""
    start = threading.Barrier(n)

    def run(i: int):
        start.wait()
        try:
            return "ok", fn(i)
        except Exception as e:  # noqa: BLE001 - compared per call
            return type(e).__name__, str(e)

    with futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _combiner(client: Client) -> Combiner:
    model = client.model("combecho")
    model.predict("warm", deployment_id="comb")
    (transport,) = model._transport("comb")._transports
    assert type(transport) is GrpcTransport and transport.combiner is not None
    return transport.combiner


def test_concurrent_calls_share_rpcs_and_each_gets_its_own_answer_or_error(echo):
    client, _ = echo
    combiner = _combiner(client)
    models = [client.model("combecho") for _ in range(THREADS)]  # each thread its own, as W1b's callers
    calls, rpcs = combiner.calls, combiner.rpcs

    def call(i: int) -> list:
        out = []
        for k in range(20):
            text = f"boom{i}.{k}" if (i + k) % 3 == 0 else f"t{i}.{k}"
            try:
                out.append(models[i].predict(text, deployment_id="comb"))
            except ModelError as e:
                assert e.type == "ValueError" and "predict" in e.remote_traceback
                out.append(f"failed: {e}")
        return out

    outcomes = _together(call)
    for i, (status, got) in enumerate(outcomes):
        assert status == "ok", got
        assert got == [(f"failed: ValueError: no boom{i}.{k}" if (i + k) % 3 == 0 else f"echo: t{i}.{k}")
                       for k in range(20)]
    sent, carried = combiner.calls - calls, combiner.rpcs - rpcs
    assert sent == THREADS * 20
    assert carried < sent, "no RPC carried more than one call"


def test_combined_slow_calls_run_at_once(echo):
    client, _ = echo
    _combiner(client)
    models = [client.model("combecho") for _ in range(8)]
    outcomes = _together(lambda i: models[i].slow(0.5, deployment_id="comb"), 8)
    assert all(status == "ok" for status, _ in outcomes), outcomes
    # Six of the eight went in one PredictMany (two RPCs may be out at once): they must have run
    # side by side, not one after another on the RPC's thread.
    assert max(most for _, most in outcomes) >= 6


def test_combined_calls_of_a_batched_method_reach_the_batcher_together(echo):
    client, _ = echo
    _combiner(client)
    models = [client.model("combecho") for _ in range(THREADS)]
    outcomes = _together(lambda i: [models[i].double(i * 10 + k, deployment_id="comb") for k in range(4)])
    assert outcomes == [("ok", [2 * (i * 10 + k) for k in range(4)]) for i in range(THREADS)]
    assert max(client.model("combecho").batch_sizes(deployment_id="comb")) > 2


def test_every_combined_call_is_in_the_access_log(echo):
    client, _ = echo
    deployment = Deployment("comb", client=client)
    _combiner(client)
    models = [client.model("combecho") for _ in range(8)]
    since = time.time()
    _together(lambda i: [models[i].predict(f"log{i}.{k}", deployment_id="comb") for k in range(5)], 8)

    def records() -> bool:
        return len(deployment.access_logs(since=since)) >= 40

    wait_for(records, 20, "40 access records")
    time.sleep(0.5)  # and no more: each call is recorded once, the RPCs that carried them not at all
    df = deployment.access_logs(since=since)
    assert len(df) == 40
    assert set(df.method) == {"predict"} and set(df.status) == {"OK"}
    assert set(df.caller) == {"local"}


def test_calls_combined_when_their_replica_is_killed_are_made_again(echo):
    """A batch that reached no runner (UNAVAILABLE) fails each of its calls as a Predict would:
    each is made again, on the replica that replaces the killed one; none is lost."""
    client, _ = echo
    _combiner(client)
    models = [client.model("combecho") for _ in range(8)]
    answers, failures = [0] * 8, []
    stop = threading.Event()

    def run(i: int) -> None:
        while not stop.is_set():
            try:
                assert models[i].predict(f"k{i}", deployment_id="comb") == f"echo: k{i}"
                answers[i] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    before = sum(answers)
    (replica,) = Deployment("comb", client=client).status["replicas"]
    os.kill(replica["pid"], signal.SIGKILL)
    wait_for(lambda: [r["state"] for r in Deployment("comb", client=client).status["replicas"]
                      if r["pid"] != replica["pid"]] == ["READY"], 60, "a new READY replica")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(90)
    assert not failures, failures[:3]
    assert before > 0 and sum(answers) > before


def _runner(client: Client) -> tuple[grpc.Channel, str]:
    """A channel to the deployment's replica, and a good route token for it."""
    model = client.model("combecho")
    model.predict("warm", deployment_id="comb")
    (transport,) = model._transport("comb")._transports
    (address,) = [r["address"] for r in Deployment("comb", client=client).status["replicas"]]
    return grpc.insecure_channel(address), transport.metadata[0][1]


def _call(text: str, token: str, timeout: float = 0.0) -> pb.BatchedCall:
    request = pb.PredictRequest(method="predict")
    request.args.add(key="text").value.str = text
    return pb.BatchedCall(request=request, token=token, timeout=timeout)


@pytest.mark.parametrize("bad", ["", "forged", "x.y.z"])
def test_each_combined_call_is_checked_with_its_own_token(echo, bad):
    client, _ = echo
    channel, token = _runner(client)
    with channel:
        many = runner_pb2_grpc.RunnerStub(channel).PredictMany
        replies = many(pb.PredictBatch(calls=[_call("a", token), _call("b", bad), _call("c", token)]),
                       timeout=30).replies
    assert [r.WhichOneof("result") for r in replies] == ["response", "error", "response"]
    assert [replies[0].response.output.str, replies[2].response.output.str] == ["echo: a", "echo: c"]
    assert replies[1].error.code == "UNAUTHENTICATED" and "call refused" in replies[1].error.message


def test_a_combined_call_whose_deadline_passed_is_not_run(echo):
    client, _ = echo
    channel, token = _runner(client)
    with channel:
        many = runner_pb2_grpc.RunnerStub(channel).PredictMany
        late = _call("late", token, timeout=1e-9)
        replies = many(pb.PredictBatch(calls=[late, _call("on time", token, timeout=30)]), timeout=30).replies
    assert replies[0].error.code == "DEADLINE_EXCEEDED"
    assert replies[1].response.output.str == "echo: on time"


def test_combining_can_be_turned_off(echo, monkeypatch):
    client, _ = echo
    monkeypatch.setenv(_wire.COMBINE_ENV, "0")
    own = Client()
    try:
        model = own.model("combecho")
        assert model.predict("alone", deployment_id="comb") == "echo: alone"
        (transport,) = model._transport("comb")._transports
        assert type(transport) is GrpcTransport and transport.combiner is None
    finally:
        own.close()


def test_a_runner_without_predict_many_gets_each_call_alone():
    """An older runner (no PredictMany: UNIMPLEMENTED) still answers every call, one RPC each."""
    seen = []

    def predict(request: bytes, context) -> bytes:
        seen.append(dict(context.invocation_metadata()).get(_wire.ROUTE_TOKEN_KEY))
        time.sleep(0.05)  # long enough for the others to queue behind the first two
        parsed = pb.PredictRequest.FromString(request)
        return pb.PredictResponse(output=pb.Value(str=parsed.args[0].value.str)).SerializeToString()

    server = grpc.server(futures.ThreadPoolExecutor(16))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "jupyter_deploy.v1.Runner", {"Predict": grpc.unary_unary_rpc_method_handler(predict)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        combiner = Combiner([channel, channel])

        def call(i: int) -> str:
            request = pb.PredictRequest(method="predict")
            request.args.add(key="text").value.str = f"t{i}"
            return combiner.call(request, f"token{i}", 10.0).str

        assert _together(call, 8) == [("ok", f"t{i}") for i in range(8)]
        assert not combiner.supported
        assert sorted(seen) == sorted(f"token{i}" for i in range(8))  # each call alone, its own token
        channel.close()
    finally:
        server.stop(0)
