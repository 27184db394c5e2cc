"""The runner over real gRPC: real ``python -m jupyter_deploy.runner`` processes on 127.0.0.1.

One runner serves the model below for most of this module; tests that need a
runner of their own (loading, concurrency, limits, start-up failures) start one.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import threading
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from conftest import module_runner, runner_command, wait_for, write_model
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from jupyter_deploy import Concept, InputError, ModelError, RunnerClient, RunnerError
from jupyter_deploy.proto import runner_pb2 as pb

pytestmark = pytest.mark.timeout(120)

KITCHEN = '''
import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from jupyter_deploy import Concept, ModelClass


@dataclass
class Stats:
    total: float
    shape: list[int]


class Kitchen(ModelClass):
    """A model with one method per call shape and type under test."""

    def load_model(self):
        self.lock = threading.Lock()

    @ModelClass.method
    def predict(self, text: str, times: int = 2, *, sep: str = "-") -> str:
        """Repeat text a number of times, joined by sep."""
        return sep.join([text] * times)

    @ModelClass.method
    async def apredict(self, text: str, suffix: Optional[str] = None) -> str:
        """Upper-case text, asynchronously."""
        await asyncio.sleep(0.01)
        return text.upper() + (suffix or "")

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        """Yield n numbered copies of text."""
        for i in range(n):
            yield f"{i}:{text}"

    @ModelClass.method
    async def agenerate(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i * i

    @ModelClass.method
    def stream(self, items: Iterator[str], prefix: str = "", *, upper: bool = False) -> Iterator[str]:
        """Echo every item with a prefix."""
        for item in items:
            yield prefix + (item.upper() if upper else item)

    @ModelClass.method
    async def astream(self, items: AsyncIterator[int], k: int) -> AsyncIterator[int]:
        async for x in items:
            yield x * k

    @ModelClass.method
    def array_stats(self, a: np.ndarray) -> Stats:
        return Stats(total=float(a.sum()), shape=list(a.shape))

    @ModelClass.method
    def double_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df * 2

    @ModelClass.method
    def classify(self, image: Image.Image) -> list[Concept]:
        return [Concept(id="w", name="width", value=image.width),
                Concept(id="h", name="height", value=image.height)]

    @ModelClass.method
    def flip(self, image: Image.Image) -> Image.Image:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    @ModelClass.method
    def fail(self, message: str) -> str:
        raise ValueError(message)

    @ModelClass.method
    def fail_after(self, n: int) -> Iterator[int]:
        for i in range(n):
            yield i
        raise RuntimeError(f"broke after {n}")

    @ModelClass.method
    def grpc_experiments(self) -> str:
        import os

        return os.environ.get("GRPC_EXPERIMENTS", "")

    @ModelClass.method
    def first_then_wait(self, marker: str) -> Iterator[str]:
        yield threading.current_thread().name
        deadline = time.monotonic() + 30
        while not Path(marker).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "released" if Path(marker).exists() else "timed out"

    @ModelClass.method
    def endless(self, marker: str) -> Iterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                time.sleep(0.01)
        finally:
            Path(marker).write_text(str(i))

    @ModelClass.method
    async def aendless(self, marker: str) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)
        finally:
            Path(marker).write_text(str(i))

    @ModelClass.method
    def endless_bidi(self, items: Iterator[int], marker: str) -> Iterator[int]:
        try:
            for x in items:
                yield x
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.01)
        finally:
            Path(marker).write_text("closed")

    @ModelClass.method
    def slow(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    @ModelClass.method
    async def aslow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @ModelClass.method
    def bad_return(self) -> int:
        return "not an int"
'''

SLEEPER = '''
import time
from jupyter_deploy import ModelClass


class Sleeper(ModelClass):
    @ModelClass.method
    def nap(self, seconds: float = 0.5) -> list[float]:
        start = time.time()
        time.sleep(seconds)
        return [start, time.time()]

    @ModelClass.method
    def echo(self, text: str) -> str:
        return text
'''


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    yield from module_runner(tmp_path_factory, KITCHEN, "--max-concurrency", "8")


@pytest.fixture(scope="module")
def client(runner):
    return runner.client()


@pytest.fixture(scope="module")
def kitchen_class(runner):
    """The model's class imported here, to compare signatures with what the client rebuilt."""
    spec = importlib.util.spec_from_file_location("kitchen_model", runner.model_dir / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Kitchen


def raw_predict(client: RunnerClient, method: str, **args: pb.Value) -> pb.PredictResponse:
    request = pb.PredictRequest(method=method, args=[pb.Entry(key=k, value=v) for k, v in args.items()])
    return client._stub.Predict(request, timeout=10)


def assert_still_serving(client: RunnerClient) -> None:
    assert client.predict("ok", 1) == "ok"
    assert client.health() == "SERVING"


# ---------------------------------------------------------------- call shapes


def test_unary_sync_keywords_and_defaults(client):
    assert client.predict("a") == "a-a"
    assert client.predict("a", 3) == "a-a-a"
    assert client.predict(text="b", times=1) == "b"
    assert client.predict("c", sep="+") == "c+c"
    with pytest.raises(InputError):
        client.predict("c", 2, "+")  # sep is keyword-only, as the model declared


def test_unary_async(client):
    assert client.apredict("hi") == "HI"
    assert client.apredict("hi", suffix="!") == "HI!"
    assert client.apredict("hi", None) == "HI"


def test_server_stream_sync_and_async(client):
    assert list(client.generate("x")) == ["0:x", "1:x", "2:x"]
    assert list(client.generate("y", n=5))[-1] == "4:y"
    assert list(client.generate("z", 0)) == []
    assert list(client.agenerate(4)) == [0, 1, 4, 9]


def test_bidi_stream_with_extra_params(client):
    assert list(client.stream(iter(["a", "b"]), prefix="> ")) == ["> a", "> b"]
    assert list(client.stream(["a", "b"], upper=True)) == ["A", "B"]
    assert list(client.stream(iter([]))) == []
    assert list(client.astream(iter(range(5)), k=3)) == [0, 3, 6, 9, 12]


def test_bidi_input_generator_is_read_lazily(client):
    """Outputs come back while the caller is still producing inputs."""
    seen: list[str] = []

    def inputs():
        for i in range(3):
            yield str(i)
            wait_for(lambda i=i: len(seen) > i, timeout=10, what=f"output {i} before input {i + 1}")

    for out in client.stream(inputs()):
        seen.append(out)
    assert seen == ["0", "1", "2"]


def test_error_in_the_callers_inputs_reaches_the_caller(client):
    def inputs():
        yield "a"
        raise KeyError("caller's own bug")

    with pytest.raises(KeyError, match="caller's own bug"):
        list(client.stream(inputs()))
    assert_still_serving(client)


def test_types_over_the_wire(client):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    stats = client.array_stats(a)
    assert stats.total == pytest.approx(66.0) and stats.shape == [3, 4]
    assert type(stats).__name__ == "Stats"

    df = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]}, index=[10, 20, 30])
    pd.testing.assert_frame_equal(client.double_frame(df), df * 2)

    img = Image.new("RGB", (7, 3), (255, 0, 0))
    img.putpixel((0, 0), (0, 0, 255))
    concepts = client.classify(img)
    assert concepts == [Concept("w", "width", 7.0), Concept("h", "height", 3.0)]
    flipped = client.flip(img)
    assert flipped.size == (7, 3) and flipped.getpixel((6, 0)) == (0, 0, 255)


def test_wrong_return_type_is_a_model_error(client):
    with pytest.raises(ModelError) as e:
        client.bad_return()
    assert "bad_return()" in str(e.value) and "int" in str(e.value)
    assert_still_serving(client)


# ---------------------------------------------------------------- describe


@pytest.mark.parametrize("name", ["predict", "apredict", "generate", "stream"])
def test_methods_have_the_models_signature_and_doc(client, kitchen_class, name):
    declared = inspect.signature(getattr(kitchen_class, name))
    declared = declared.replace(parameters=list(declared.parameters.values())[1:])
    method = getattr(client, name)
    assert inspect.signature(method) == declared
    assert method.__doc__ == inspect.getdoc(getattr(kitchen_class, name))
    assert inspect.getdoc(getattr(kitchen_class, name)) in _help_text(method)


def test_describe(client):
    d = client.description
    assert d.model_id == "test" and d.class_name == "Kitchen"
    assert "one method per call shape" in d.doc
    shapes = {m.name: m.shape for m in d.methods}
    assert shapes["predict"] == "unary" and shapes["generate"] == "server_stream"
    assert shapes["stream"] == "bidi" and shapes["astream"] == "bidi"
    assert {"classify_by_url", "classify_by_bytes", "classify_by_filepath"} <= set(dir(client))


def _help_text(obj) -> str:
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


# ---------------------------------------------------------------- model errors


def test_model_exception_carries_type_message_and_trimmed_traceback(client):
    with pytest.raises(ModelError) as e:
        client.fail("boom")
    err = e.value
    assert err.type == "ValueError" and err.message == "boom"
    assert "model.py" in err.remote_traceback and "raise ValueError(message)" in err.remote_traceback
    assert "jupyter_deploy/runner" not in err.remote_traceback
    assert "grpc" not in err.remote_traceback
    assert_still_serving(client)


def test_error_mid_stream_arrives_after_the_items_before_it(client):
    got = []
    with pytest.raises(ModelError) as e:
        for item in client.fail_after(3):
            got.append(item)
    assert got == [0, 1, 2]
    assert e.value.type == "RuntimeError" and e.value.message == "broke after 3"
    assert "model.py" in e.value.remote_traceback
    assert "jupyter_deploy/runner" not in e.value.remote_traceback
    assert_still_serving(client)


def test_the_runner_serves_without_grpcs_event_engine_listener(client):
    # Its connections are then read by the server's own poll (one thread hop less per call).
    assert "-event_engine_listener" in client.grpc_experiments().split(",")


@pytest.mark.parametrize("given, served", [("event_engine_listener", "event_engine_listener"),
                                           ("-event_engine_client", "-event_engine_client,-event_engine_listener")])
def test_grpc_experiments_given_to_the_runner(start_runner, monkeypatch, given, served):
    monkeypatch.setenv("GRPC_EXPERIMENTS", given)
    r = start_runner(KITCHEN)
    client = r.client()
    client.wait_ready(timeout=60)
    assert client.grpc_experiments() == served


def test_first_stream_item_is_sent_before_the_second_exists(client, tmp_path):
    marker = tmp_path / "go"
    gen = client.first_then_wait(str(marker))
    first = next(gen)  # the model now waits for the marker before it makes its second item
    # Made on the call's own thread ("runner_N"), not handed over by a producer thread.
    assert first.startswith("runner"), first
    marker.touch()
    assert list(gen) == ["released"]


def test_a_stream_that_fails_before_its_first_item_sends_only_the_error(client):
    request = pb.PredictRequest(method="fail_after", args=[pb.Entry(key="n", value=pb.Value(int=0))])
    responses = list(client._stub.Generate(request, timeout=10))
    assert len(responses) == 1 and responses[0].error.type == "RuntimeError"
    with pytest.raises(ModelError, match="broke after 0"):
        list(client.fail_after(0))


def test_arguments_are_checked_as_python_binds_them(client):
    assert client.predict("a", 3, sep="+") == "a+a+a"
    assert client.predict(text="a", times=1) == "a"
    assert client.predict("a", times=2) == "a-a"
    for args, kwargs, says in [(("a",), {"text": "b"}, "multiple values"), ((), {}, "missing"),
                               (("a",), {"bogus": 1}, "unexpected keyword"),
                               (("a", 2, "-"), {}, "too many positional"),
                               ((), {"times": 2}, "missing")]:
        with pytest.raises(InputError, match=says):
            client.predict(*args, **kwargs)


# ---------------------------------------------------------------- stopping streams


@pytest.mark.parametrize("method", ["endless", "aendless"])
def test_closing_a_stream_stops_the_models_generator(client, tmp_path, method):
    marker = tmp_path / "closed"
    gen = getattr(client, method)(str(marker))
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    wait_for(marker.exists, timeout=15, what="the model's finally")
    assert_still_serving(client)


def test_breaking_out_of_a_bidi_stream_stops_the_model(client, tmp_path):
    marker = tmp_path / "closed"
    for i, _ in enumerate(client.endless_bidi(iter([7, 8]), marker=str(marker))):
        if i == 4:
            break
    wait_for(marker.exists, timeout=15, what="the model's finally")
    assert marker.read_text() == "closed"


# ---------------------------------------------------------------- deadlines


def test_deadline_on_a_slow_unary_call(runner, client):
    short = runner.client(timeout=0.3)
    for method in (short.slow, short.aslow):
        with pytest.raises(RunnerError) as e:
            method(1.0)
        assert e.value.code == "DEADLINE_EXCEEDED"
    assert short.slow(0.01) == "done"
    assert_still_serving(client)


def test_deadline_stops_a_slow_stream(runner, tmp_path):
    short = runner.client(timeout=0.3)
    marker = tmp_path / "closed"
    got = []
    with pytest.raises(RunnerError) as e:
        for item in short.endless(str(marker)):
            got.append(item)
    assert e.value.code == "DEADLINE_EXCEEDED"
    assert got[:3] == [0, 1, 2]
    wait_for(marker.exists, timeout=15, what="the model's finally after the deadline")


# ---------------------------------------------------------------- bad messages


def _rpc_code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_unknown_method(client):
    code, details = _rpc_code(lambda: raw_predict(client, "nope"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown method 'nope'" in details and "predict" in details
    assert_still_serving(client)


def test_missing_parameter(client):
    code, details = _rpc_code(lambda: raw_predict(client, "predict"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "missing" in details and "text" in details
    with pytest.raises(InputError, match="text"):
        client.predict()
    assert_still_serving(client)


def test_wrong_type(client):
    code, details = _rpc_code(lambda: raw_predict(client, "predict", text=pb.Value(int=3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'text'" in details and "expected str" in details
    with pytest.raises(InputError, match="parameter 'times'"):
        client.predict("a", "three")
    assert_still_serving(client)


def test_unknown_parameter(client):
    code, details = _rpc_code(
        lambda: raw_predict(client, "predict", text=pb.Value(str="a"), bogus=pb.Value(int=1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unexpected parameter 'bogus'" in details
    assert_still_serving(client)


def test_wrong_call_shape(client):
    code, details = _rpc_code(lambda: raw_predict(client, "generate", text=pb.Value(str="a")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Generate" in details
    request = pb.PredictRequest(method="predict", args=[pb.Entry(key="text", value=pb.Value(str="a"))])
    code, details = _rpc_code(lambda: list(client._stub.Generate(request, timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Predict" in details
    start = pb.PredictRequest(method="generate", args=[pb.Entry(key="text", value=pb.Value(str="a"))])
    code, details = _rpc_code(
        lambda: list(client._stub.Stream(iter([pb.StreamRequest(start=start)]), timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Generate" in details
    assert_still_serving(client)


def test_stream_without_start(client):
    code, details = _rpc_code(
        lambda: list(client._stub.Stream(iter([pb.StreamRequest(items=[pb.Value(str="a")])]), timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "start" in details
    code, details = _rpc_code(lambda: list(client._stub.Stream(iter([]), timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_still_serving(client)


def test_wrong_stream_item_type(client):
    start = pb.PredictRequest(method="stream")
    msgs = [pb.StreamRequest(start=start, items=[pb.Value(str="a")]), pb.StreamRequest(items=[pb.Value(int=1)])]
    responses = list(client._stub.Stream(iter(msgs), timeout=10))
    last = responses[-1]
    assert last.HasField("error") and last.error.code == "INVALID_ARGUMENT"
    assert "item 1" in last.error.message
    with pytest.raises(InputError, match="item 1"):
        list(client.stream(["a", 1]))
    assert_still_serving(client)


def test_malformed_protobuf(runner, client):
    with grpc.insecure_channel(runner.address) as channel:
        call = channel.unary_unary("/jupyter_deploy.v1.Runner/Predict")
        code, details = _rpc_code(lambda: call(b"\xff\xff", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in details
    assert_still_serving(client)


def test_oversize_request(start_runner):
    r = start_runner(SLEEPER, "--max-message-mb", "0.01")
    c = r.client()
    c.wait_ready(timeout=60)
    for size in (15_000, 50_000):
        with pytest.raises(InputError, match="limit"):
            c.echo("x" * size)
    big = pb.PredictRequest(method="echo", args=[pb.Entry(key="text", value=pb.Value(str="x" * 50_000))])
    code, details = _rpc_code(lambda: c._stub.Predict(big, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "over the runner's limit" in details
    assert c.echo("small") == "small"


# ---------------------------------------------------------------- end markers


def test_every_stream_ends_with_end_or_error(client):
    request = pb.PredictRequest(method="generate", args=[
        pb.Entry(key="text", value=pb.Value(str="a")), pb.Entry(key="n", value=pb.Value(int=5))])
    responses = list(client._stub.Generate(request, timeout=10))
    last = responses[-1]
    assert last.HasField("end") and not last.HasField("error")
    assert last.end.count == 5 == sum(len(r.items) for r in responses)
    assert not any(r.HasField("end") or r.HasField("error") for r in responses[:-1])

    request = pb.PredictRequest(method="generate", args=[
        pb.Entry(key="text", value=pb.Value(str="a")), pb.Entry(key="n", value=pb.Value(int=0))])
    responses = list(client._stub.Generate(request, timeout=10))
    assert responses[-1].HasField("end") and responses[-1].end.count == 0

    request = pb.PredictRequest(method="fail_after", args=[pb.Entry(key="n", value=pb.Value(int=2))])
    responses = list(client._stub.Generate(request, timeout=10))
    last = responses[-1]
    assert last.HasField("error") and last.error.type == "RuntimeError"
    assert sum(len(r.items) for r in responses) == 2

    start = pb.PredictRequest(method="stream", args=[pb.Entry(key="prefix", value=pb.Value(str="p"))])
    msgs = [pb.StreamRequest(start=start, items=[pb.Value(str="a")]),
            pb.StreamRequest(items=[pb.Value(str="b"), pb.Value(str="c")])]
    responses = list(client._stub.Stream(iter(msgs), timeout=10))
    assert [v.str for r in responses for v in r.items] == ["pa", "pb", "pc"]
    assert responses[-1].HasField("end") and responses[-1].end.count == 3


# ---------------------------------------------------------------- concurrency


def _naps(client: RunnerClient, n: int) -> list[list[float]]:
    results: list = [None] * n
    errors: list = []

    def one(i: int) -> None:
        try:
            results[i] = client.nap(0.5)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and all(r is not None for r in results)
    return results


def test_calls_run_concurrently_up_to_the_limit(start_runner):
    r = start_runner(SLEEPER, "--max-concurrency", "4")
    c = r.client()
    c.wait_ready(timeout=60)
    intervals = _naps(c, 4)
    # All four intervals share a moment: every call started before any ended.
    assert max(s for s, _ in intervals) < min(e for _, e in intervals)


def test_max_concurrency_one_serialises_calls(start_runner):
    r = start_runner(SLEEPER, "--max-concurrency", "1")
    c = r.client()
    c.wait_ready(timeout=60)
    intervals = sorted(_naps(c, 4))
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert start >= end


# ---------------------------------------------------------------- lifecycle


SLOW_LOAD = '''
import time
from jupyter_deploy import ModelClass


class SlowLoad(ModelClass):
    def load_model(self):
        go = self.model_path / "go"
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never created 'go'")
            time.sleep(0.02)

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


def test_health_not_serving_while_loading(start_runner):
    r = start_runner(SLOW_LOAD)
    c = r.client()
    assert c.health() == "NOT_SERVING"
    health = health_pb2_grpc.HealthStub(c._channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="jupyter_deploy.v1.Runner"), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(RunnerError) as e:
        c.predict("early")
    assert e.value.code == "UNAVAILABLE" and "loading" in str(e.value)
    assert "jupyter_deploy runner: serving\n" not in r.stdout

    (r.model_dir / "go").touch()
    c.wait_ready(timeout=30)
    assert c.health() == "SERVING"
    assert c.predict("late") == "late"
    wait_for(lambda: any(line.strip() == "jupyter_deploy runner: serving" for line in r.stdout),
             timeout=10, what="the 'serving' line")


def _run_to_exit(model_dir: Path, *args: str, address: str = "127.0.0.1:0") -> subprocess.CompletedProcess:
    return subprocess.run(runner_command(model_dir, *args, address=address), capture_output=True,
                          text=True, timeout=60, start_new_session=True)


def test_failed_load_model_exits_3(tmp_path):
    model = write_model(tmp_path / "m", '''
        from jupyter_deploy import ModelClass

        class Broken(ModelClass):
            def load_model(self):
                raise FileNotFoundError("weights.bin is missing")

            @ModelClass.method
            def predict(self, text: str) -> str:
                return text
        ''')
    done = _run_to_exit(model)
    assert done.returncode == 3
    assert "load_model() failed" in done.stderr
    assert "FileNotFoundError: weights.bin is missing" in done.stderr
    assert "model.py" in done.stderr


def test_syntax_error_exits_2_with_file_and_line(tmp_path):
    model = write_model(tmp_path / "m", "from jupyter_deploy import ModelClass\n\nclass M(ModelClass)\n    pass\n")
    done = _run_to_exit(model)
    assert done.returncode == 2
    assert str(model / "1" / "model.py") in done.stderr and "line 3" in done.stderr
    assert "listening" not in done.stdout


def test_non_loopback_address_is_refused(tmp_path):
    model = write_model(tmp_path / "m", SLEEPER)
    for address in ("0.0.0.0:0", "[::]:0", "example.com:0"):
        done = _run_to_exit(model, address=address)
        assert done.returncode == 2, address
        assert "loopback" in done.stderr and "listening" not in done.stdout


def test_sigterm_stops_the_runner_cleanly(start_runner):
    r = start_runner(SLEEPER)
    c = r.client()
    c.wait_ready(timeout=60)
    r.proc.terminate()
    assert r.proc.wait(timeout=20) == 0
    assert c.health() == "UNREACHABLE"


CONFIG_READER = '''
import sys
from jupyter_deploy import ModelClass


class Reader(ModelClass):
    @ModelClass.method
    def validator_loaded(self) -> bool:
        return "pydantic" in sys.modules

    @ModelClass.method
    def model_id(self) -> str:
        return self.config.model.id
'''


def test_the_config_is_read_when_the_model_first_asks_for_it(start_runner):
    """A replica starts without the config validator (its cold start), and self.config still works."""
    r = start_runner(CONFIG_READER)
    with r.client() as model:
        model.wait_ready()
        assert model.validator_loaded() is False
        assert model.model_id() == "test"
        assert model.validator_loaded() is True
