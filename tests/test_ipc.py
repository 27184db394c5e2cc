"""The same-host data plane: model calls over the runners' ipc sockets (``runner._ipc``, ``client._ipc``).

A real daemon and real runner processes. A caller on the daemon's host calls over ipc by
default; these tests check it gives what gRPC gives (answers, errors, access records), that
the route token is checked there too, that a killed replica's calls go on to the other
replica, and that ``JUPYTER_DEPLOY_DATA_PLANE=grpc`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import write_model
from daemon_helpers import alive, daemon_pid, isolated_home, until, wait_for

from jupyter_deploy import Client, Deployment, InputError, ModelError, RunnerError
from jupyter_deploy.client._ipc import IpcTransport
from jupyter_deploy.client._runner_client import GrpcTransport
from jupyter_deploy.model import codec
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

    @ModelClass.method
    def flood(self, size: int, folder: str, n: int = 0) -> Iterator[bytes]:
        """``n`` items (0: no end) of ``size`` bytes as fast as it can, each starting with its
        index; writes its process id to ``folder``/pid, and how many it made to ``folder``/closed."""
        import os
        import pathlib
        pathlib.Path(folder, "pid").write_text(str(os.getpid()))
        made, filler = 0, b"x" * size
        try:
            while not n or made < n:
                yield made.to_bytes(8, "little") + filler[8:]
                made += 1
        finally:
            pathlib.Path(folder, "closed").write_text(str(made))

    @ModelClass.method
    def echo_bytes(self, data: bytes) -> bytes:
        assert type(data) is bytes, type(data)
        return data

    @ModelClass.method
    def join(self, first: bytes, second: bytes, sep: str = "|") -> bytes:
        return first + sep.encode() + second
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


def test_each_models_route_has_its_own_grpc_connection_up_to_a_bound(echo, monkeypatch):
    # Threads that each call through their own Model must not all share one HTTP/2 connection
    # (a remote caller's W1b): each route gets its own, up to ROUTE_CONNECTIONS per replica.
    from jupyter_deploy.client import _api

    monkeypatch.setattr(_api, "ROUTE_CONNECTIONS", 2)
    monkeypatch.setenv("JUPYTER_DEPLOY_DATA_PLANE", "grpc")
    client = Client()
    try:
        models = [client.model("ipcecho") for _ in range(3)]
        for i, model in enumerate(models):
            for _ in range(2):  # both replicas, in turn
                assert model.predict(f"m{i}", deployment_id="ipc") == f"echo: m{i}"
        channels = client._route_channels
        assert len(channels) == 2  # two replicas
        for chans in channels.values():
            assert len(chans) == 2 and chans[0] is not chans[1]  # the third route shares one
    finally:
        client.close()


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


ITEM = 256 << 10  # a stream's item in the flow-control tests: 16 fill the runner's 4 MiB window


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _closed(folder) -> int | None:
    """How many items the model's generator made, once it was closed; None before."""
    path = folder / "closed"
    return int(path.read_text()) if path.exists() and path.read_text() else None


def test_a_slow_reader_of_an_endless_stream_keeps_the_runner_small(echo, tmp_path):
    """The runner sends a stream only as far as its caller's credit (a window of messages and
    bytes): an endless stream of 256 KiB items read slowly would otherwise pile up in its
    queues as fast as the model makes them (gigabytes in the test's few seconds)."""
    client, _ = echo
    before = {r["pid"]: _rss_mib(r["pid"]) for r in _ready(client)}
    items = client.model("ipcecho").flood(ITEM, str(tmp_path), deployment_id="ipc")
    try:
        assert int.from_bytes(next(items)[:8], "little") == 0
        pid = int((tmp_path / "pid").read_text())
        base, peak, got = before[pid], 0.0, 1
        end = time.monotonic() + 4
        for _ in range(20):  # and 4 s: read a few, sleep, read a few
            if time.monotonic() > end:
                break
            time.sleep(0.4)
            peak = max(peak, _rss_mib(pid) - base)
            if peak > 200:
                break  # no window: stop before it takes the machine's memory
            for _ in range(4):
                assert int.from_bytes(next(items)[:8], "little") == got
                got += 1
        assert peak < 100, f"the runner grew by {peak:.0f} MiB under a slow reader"
        assert _closed(tmp_path) is None  # endless: still there, waiting for its reader
    finally:
        items.close()
    made = wait_for(lambda: _closed(tmp_path), 10, "the model's generator to be closed")
    # What the model made past what was read is bounded by the window and the runner's queue.
    assert made - got < 100, (made, got)


def test_a_stream_longer_than_its_window_comes_whole_and_in_order(echo, tmp_path):
    client, _ = echo
    n = 100  # 25 MiB: several windows, each waiting for the caller's credit
    items = client.model("ipcecho").flood(ITEM, str(tmp_path), n=n, deployment_id="ipc")
    got = [next(items)]
    time.sleep(0.5)  # the runner fills its window and waits
    got.extend(items)
    assert [int.from_bytes(x[:8], "little") for x in got] == list(range(n))
    assert all(len(x) == ITEM and x[8:] == b"x" * (ITEM - 8) for x in got)
    assert wait_for(lambda: _closed(tmp_path), 10, "the model's generator to end") == n
    # Many small items, batched into messages: whole and in order as well.
    assert list(client.model("ipcecho").generate("s", n=20000, deployment_id="ipc")) == [
        f"s{i}" for i in range(20000)]


def test_a_cancel_while_the_stream_waits_on_its_window_stops_the_model(echo, tmp_path):
    client, _ = echo
    model = client.model("ipcecho")
    items = model.flood(ITEM, str(tmp_path), deployment_id="ipc")
    next(items)
    time.sleep(1.0)  # the window fills; the runner waits for credit, the model behind it
    assert _closed(tmp_path) is None
    items.close()
    made = wait_for(lambda: _closed(tmp_path), 10, "the model's generator to be closed")
    assert made < 100, made
    assert model.predict("after", deployment_id="ipc") == "echo: after"  # its slot is free again


def test_the_deadline_runs_while_the_stream_waits_on_its_window(echo, tmp_path):
    client = Client(timeout=2.0)
    try:
        items = client.model("ipcecho").flood(ITEM, str(tmp_path), deployment_id="ipc")
        next(items)
        # Nobody reads: the runner, waiting on the window, ends the stream at its deadline itself.
        wait_for(lambda: _closed(tmp_path), 15, "the runner to stop the stream at its deadline")
        with pytest.raises(RunnerError) as e:
            for _ in range(1000):  # what was sent within the window, then the deadline
                next(items)
        assert e.value.code == "DEADLINE_EXCEEDED"
    finally:
        client.close()


def test_a_caller_killed_while_its_stream_waits_stops_the_model(echo, tmp_path):
    """A killed caller sends no cancel: the runner's probe while it waits finds it gone."""
    script = (
        "import sys\n"
        "from jupyter_deploy import Client\n"
        f"items = Client().model('ipcecho').flood({ITEM}, {str(tmp_path)!r}, deployment_id='ipc')\n"
        "next(items)\n"
        "print('reading', flush=True)\n"
        "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline() == b"reading\n"
        time.sleep(0.5)  # the window fills
        assert _closed(tmp_path) is None
    finally:
        proc.kill()
        proc.wait(30)
    made = wait_for(lambda: _closed(tmp_path), 15, "the model's generator to be closed")
    assert made < 100, made


def test_large_bytes_arguments_round_trip_apart_from_the_request(echo):
    client, _ = echo
    model = client.model("ipcecho")
    for size in (1 << 16, 1 << 20, 5 << 20):  # from the threshold up
        data = os.urandom(size)
        assert model.echo_bytes(data, deployment_id="ipc") == data
    first, second = os.urandom(3 << 20), os.urandom(1 << 20)
    assert model.join(first, second, "--", deployment_id="ipc") == first + b"--" + second
    assert model.join(first, b"small", deployment_id="ipc") == first + b"|small"  # one apart, one inside
    assert model.echo_bytes(b"tiny", deployment_id="ipc") == b"tiny"
    # The same through one replica's transport, the arguments kept apart as the client does.
    ipc = _transports(model)[0]
    assert isinstance(ipc, IpcTransport)
    raw: dict = {}
    request = codec.encode_request(model.specs["join"], {"first": first, "second": second, "sep": "+"}, raw=raw)
    assert sorted(raw) == ["first", "second"] and [e.key for e in request.args] == ["sep"]
    assert ipc.unary(request, raw).bytes == first + b"+" + second


def test_large_bytes_arguments_fail_as_over_grpc(echo):
    """The runner decodes a bytes argument sent apart as it would one inside the request: one
    its method declares otherwise (a caller with an older signature) or does not have fails alike."""
    client, _ = echo
    ipc = _transports(client.model("ipcecho"))[0]
    big = os.urandom(1 << 20)
    cases = [
        (pb.PredictRequest(method="predict"), {"text": big}),           # declared str
        (pb.PredictRequest(method="echo_bytes"), {"nope": big}),        # no such parameter
        (pb.PredictRequest(method="join"), {"first": big}),             # one missing
        (pb.PredictRequest(method="nope"), {"data": big}),              # no such method
    ]
    for request, raw in cases:
        with pytest.raises(InputError) as by_ipc:
            ipc.unary(request, raw)
        with pytest.raises(InputError) as by_grpc:
            ipc.grpc.unary(request, raw)
        assert str(by_ipc.value) == str(by_grpc.value)
        assert not request.args  # the bytes stayed out of the caller's request (a failover sends it again)
    assert "predict() parameter 'text'" in _outcome(lambda: ipc.unary(*cases[0]))[1]
    assert "unexpected parameter 'nope'" in _outcome(lambda: ipc.unary(*cases[1]))[1]


def test_large_bytes_arguments_are_logged_as_over_grpc(echo, monkeypatch):
    """Access records count a call's bytes the same either way; the inference log keeps them."""
    client, _ = echo
    deployment = Deployment("ipc", client=client)
    over_grpc, over_ipc = _grpc_model(monkeypatch), client.model("ipcecho")
    deployment.update(inference_logger={"mode": "all", "max_inline_bytes": 100})
    try:
        def applied() -> bool:
            since = time.time()
            over_ipc.predict("probe", deployment_id="ipc")
            over_ipc.predict("probe", deployment_id="ipc")  # both replicas
            rows = until(lambda: deployment.inference_logs(since=since), lambda d: len(d) >= 2, 15, "records")
            return all(r is not None for r in rows.inputs)
        wait_for(applied, 30, "mode all to apply on both replicas")
        since = time.time()
        big = os.urandom(1 << 20)
        assert over_ipc.join(big, b"x", deployment_id="ipc") == big + b"|x"
        assert over_grpc.join(big, b"x", deployment_id="ipc") == big + b"|x"
        df = until(lambda: deployment.inference_logs(since=since), lambda d: len(d) >= 2, 15, "two records")
        rows = df.to_dict("records")
        assert [r["method"] for r in rows] == ["join", "join"]
        digest = {"bytes": {"size": 1 << 20, "sha256": hashlib.sha256(big).hexdigest()}}
        for row in rows:
            assert row["inputs"]["first"] == digest
            assert row["inputs"]["second"]["bytes"]["size"] == 1
        access = until(lambda: deployment.access_logs(since=since), lambda d: len(d) >= 2, 15, "two records")
        assert len(set(access.bytes_in)) == 1 and access.bytes_in.iloc[0] > 1 << 20
    finally:
        deployment.update(inference_logger={"mode": "none"})


def test_large_bytes_over_the_runners_limit_are_refused_as_over_grpc(start_runner, tmp_path):
    from jupyter_deploy import _wire

    port_file = tmp_path / "port"
    r = start_runner(MODEL, "--max-message-mb", "0.5", "--port-file", str(port_file))
    runner = r.client()
    runner.wait_ready(timeout=60)
    endpoint = _wire.ipc_file(port_file).read_text().strip()
    grpc = GrpcTransport(runner._stub, 30)
    ipc = IpcTransport(endpoint, "", 30, grpc)
    spec = runner.specs["echo_bytes"]
    small = os.urandom(100_000)
    raw: dict = {}
    assert ipc.unary(codec.encode_request(spec, {"data": small}, raw=raw), raw).bytes == small
    assert raw  # it went apart
    for size in (600_000, (1 << 20) - 3):
        raw = {}
        request = codec.encode_request(spec, {"data": os.urandom(size)}, raw=raw)
        with pytest.raises(InputError, match="over the runner's limit") as by_ipc:
            ipc.unary(request, raw)
        with pytest.raises(InputError) as by_grpc:
            grpc.unary(pb.PredictRequest.FromString(request.SerializeToString()), raw)
        assert str(by_ipc.value) == str(by_grpc.value)
    assert ipc.unary(codec.encode_request(spec, {"data": small}, raw=raw), raw).bytes == small


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
