"""Dynamic batching with real runner processes (and one real daemon) over real gRPC.

Models record the size of every batch they are called with, and a method returns
those sizes, so a test sees whether calls really were batched.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import runner_command, write_model
from daemon_helpers import isolated_home

from jupyter_deploy import (
    Client,
    ControlPlaneError,
    InputError,
    ModelClass,
    ModelDefinitionError,
    ModelError,
    Nodepool,
    RunnerError,
    load_local,
)
from jupyter_deploy.control._configs import deployment_config, runner_args
from jupyter_deploy.control._errors import InvalidArgument

pytestmark = pytest.mark.timeout(180)

BATCHED = '''
import threading
import time

from jupyter_deploy import ModelClass


class Batched(ModelClass):
    def load_model(self):
        self.lock = threading.Lock()
        self.sizes = []

    @ModelClass.method(batch=True)
    def predict(self, x: list[int], tag: list[str]) -> list[str]:
        """Tag twice x."""
        with self.lock:  # one batch at a time, like one accelerator
            self.sizes.append(len(x))
            time.sleep(0.02)
        if any(v < 0 for v in x):
            raise ValueError(f"negative input in batch {x}")
        return [f"{t}:{2 * v}" for v, t in zip(x, tag)]

    @ModelClass.method(batch=True)
    def short(self, x: list[int]) -> list[int]:
        return x[:-1]  # one result too few: a bug of the model

    @ModelClass.method(batch=True)
    async def apredict(self, x: list[float]) -> list[float]:
        return [v + 0.5 for v in x]

    @ModelClass.method(batch=True)
    def slow(self, x: list[int]) -> list[int]:
        time.sleep(1.0)
        return x

    @ModelClass.method
    def batch_sizes(self) -> list[int]:
        return list(self.sizes)

    @ModelClass.method
    def plain(self, text: str) -> str:
        return text.upper()
'''


def run_concurrently(fn, args: list, threads: int) -> list:
    """``fn(*a)`` for every ``a`` in ``args`` from ``threads`` threads; results (or exceptions) in order."""
    def one(a):
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001 - collected for the test to inspect
            return e
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, args))


@pytest.fixture
def batching_runner(start_runner):
    def start(settings: str | None):
        args = ["--inference-batcher", settings] if settings is not None else []
        runner = start_runner(BATCHED, *args)
        client = runner.client(timeout=30)
        client.wait_ready(60)
        return runner, client
    return start


# ---------------------------------------------------------------- the caller's view


def test_callers_see_element_types_in_signatures_and_describe() -> None:
    class M(ModelClass):
        @ModelClass.method(batch=True)
        def predict(self, x: list[int], *, name: list[str]) -> list[float]:
            return [0.0] * len(x)

    spec = M.method_specs()["predict"]
    assert spec.batch
    assert str(spec.signature()) == "(x: int, *, name: str) -> float"
    assert spec.signature_text == "(x: int, *, name: str) -> float"


@pytest.mark.parametrize("source, message", [
    ("def predict(self, x: int) -> list[int]: ...", "parameter 'x': must be list[T]"),
    ("def predict(self, x: list[int]) -> int: ...", "return: must be list[T]"),
    ("def predict(self, x: list[int] = [1]) -> list[int]: ...", "cannot have defaults"),
    ("def predict(self) -> list[int]: ...", "at least one list[T] parameter"),
    ("def predict(self, x: list[int]) -> Iterator[int]:\n        yield 1", "must be unary"),
    ("def predict(self, x: list) -> list[int]: ...", "must be list[T]"),
])
def test_a_method_that_cannot_be_batched_is_refused_clearly(source: str, message: str) -> None:
    namespace: dict = {}
    exec("from typing import Iterator\nfrom jupyter_deploy import ModelClass\n"
         "class M(ModelClass):\n    @ModelClass.method(batch=True)\n    " + source, namespace)
    with pytest.raises(ModelDefinitionError, match=re.escape(message)) as e:
        namespace["M"].method_specs()
    assert "predict() (batch=True)" in str(e.value)
    assert "\n" not in str(e.value)


def test_batch_must_be_true_or_false() -> None:
    with pytest.raises(ModelDefinitionError, match="true or false"):
        ModelClass.method(batch="yes")


def test_load_local_calls_a_batchable_method_one_item_at_a_time(tmp_path) -> None:
    model = load_local(write_model(tmp_path / "m", BATCHED))
    assert str(inspect.signature(model.predict)) == "(x: int, tag: str) -> str"
    assert model.predict(3, "a") == "a:6"
    assert model.apredict(1.0) == 1.5
    assert model.batch_sizes() == [1]
    with pytest.raises(InputError, match="x"):
        model.predict("three", "a")


def test_load_local_batches_calls_from_threads_when_asked(tmp_path) -> None:
    model = load_local(write_model(tmp_path / "m", BATCHED),
                       inference_batcher={"max_batch_size": 4, "max_latency_ms": 500})
    results = run_concurrently(model.predict, [(i, f"t{i}") for i in range(8)], threads=8)
    assert results == [f"t{i}:{2 * i}" for i in range(8)]
    assert max(model.batch_sizes()) > 1


def test_run_locally_shows_the_element_signature(tmp_path) -> None:
    folder = write_model(tmp_path / "m", BATCHED)
    out = subprocess.run([sys.executable, "-m", "jupyter_deploy", "run-locally", str(folder), "--no-env"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.strip().startswith("predict "))
    assert "unary (batch)" in line and "(x: int, tag: str) -> str" in line


# ---------------------------------------------------------------- a runner


def test_concurrent_calls_are_batched_and_each_caller_gets_its_own_result(batching_runner) -> None:
    _, client = batching_runner('{"enabled": true, "max_batch_size": 8, "max_latency_ms": 50}')
    assert str(inspect.signature(client.predict)) == "(x: int, tag: str) -> str"
    calls = [(i, f"c{i}") for i in range(64)]
    results = run_concurrently(client.predict, calls, threads=16)
    assert results == [f"c{i}:{2 * i}" for i in range(64)]
    sizes = client.batch_sizes()
    assert sum(sizes) == 64
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 8
    # Unbatched methods of the same model are untouched.
    assert client.plain("a") == "A"
    assert run_concurrently(client.apredict, [(float(i),) for i in range(8)], threads=8) == \
        [i + 0.5 for i in range(8)]


def test_every_caller_of_a_failed_batch_gets_the_models_error(batching_runner) -> None:
    # A long wait and a batch of exactly 4: the 4 concurrent calls below share one batch.
    _, client = batching_runner('{"max_batch_size": 4, "max_latency_ms": 5000}')
    results = run_concurrently(client.predict, [(1, "a"), (-1, "b"), (2, "c"), (3, "d")], threads=4)
    assert client.batch_sizes() == [4]
    for r in results:
        assert isinstance(r, ModelError), r
        assert r.type == "ValueError" and "negative input in batch" in r.message
        assert "raise ValueError" in r.remote_traceback
    # The next batch is fine again.
    assert run_concurrently(client.predict, [(i, "z") for i in range(4)], threads=4) == \
        ["z:0", "z:2", "z:4", "z:6"]


def test_a_batch_result_of_the_wrong_length_is_the_models_error(batching_runner) -> None:
    _, client = batching_runner('{"max_batch_size": 2, "max_latency_ms": 5000}')
    results = run_concurrently(client.short, [(1,), (2,)], threads=2)
    for r in results:
        assert isinstance(r, ModelError), r
        assert r.type == "BatchSizeError"
        assert "short() returned 1 result(s) for a batch of 2 call(s)" in r.message


def test_a_call_that_waits_past_timeout_ms_fails_with_a_deadline(batching_runner) -> None:
    _, client = batching_runner('{"max_batch_size": 1, "max_latency_ms": 0, "timeout_ms": 100}')
    results = run_concurrently(client.slow, [(1,), (2,), (3,)], threads=3)
    assert sum(r == i for r, i in zip(results, (1, 2, 3))) >= 1
    late = [r for r in results if isinstance(r, Exception)]
    assert late, results  # batches of one taking 1 s each: the others waited over 100 ms
    for r in late:
        assert isinstance(r, RunnerError) and r.code == "DEADLINE_EXCEEDED"
        assert "timeout_ms" in str(r)


def test_with_batching_off_a_batchable_method_gets_batches_of_one(batching_runner) -> None:
    runner, client = batching_runner(None)
    results = run_concurrently(client.predict, [(i, "t") for i in range(16)], threads=8)
    assert results == [f"t:{2 * i}" for i in range(16)]
    assert client.batch_sizes() == [1] * 16
    assert "inference batcher" not in "".join(runner.stdout)


def test_a_bad_batcher_flag_stops_the_runner_with_one_clear_line(tmp_path) -> None:
    folder = write_model(tmp_path / "m", BATCHED)
    out = subprocess.run(runner_command(folder, "--inference-batcher", '{"max_batch_size": 0, "speed": 1}'),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "inference_batcher.max_batch_size: must be a whole number from 1 to 4096, got 0" in out.stderr
    assert "inference_batcher.speed: unknown field" in out.stderr


# ---------------------------------------------------------------- deployment configs


@pytest.mark.parametrize("batcher, field, problem", [
    ({"max_batch_size": 0}, "inference_batcher.max_batch_size", "from 1 to 4096, got 0"),
    ({"max_batch_size": 2.5}, "inference_batcher.max_batch_size", "whole number"),
    ({"max_latency_ms": -1}, "inference_batcher.max_latency_ms", "from 0 to 10000"),
    ({"timeout_ms": "soon"}, "inference_batcher.timeout_ms", "got 'soon'"),
    ({"enabled": "yes"}, "inference_batcher.enabled", "expected true or false"),
    ({"max_batch": 8}, "inference_batcher.max_batch", "unknown field (known: enabled, max_batch_size"),
    ([8], "inference_batcher", "expected a mapping"),
])
def test_bad_batcher_settings_are_one_line_each_naming_the_field(batcher, field, problem) -> None:
    with pytest.raises(InvalidArgument) as e:
        deployment_config({"worker": {"model": {"id": "m"}}, "inference_batcher": batcher}, caller="local")
    lines = str(e.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"deployment config: {field}: ") and problem in lines[0]


def test_batcher_settings_get_defaults_and_reach_the_runner_as_a_flag() -> None:
    cfg = deployment_config({"worker": {"model": {"id": "m"}}, "inference_batcher": {"max_batch_size": 8}},
                            caller="local")
    assert cfg["inference_batcher"] == {"enabled": True, "max_batch_size": 8, "max_latency_ms": 5.0,
                                        "timeout_ms": 10_000}
    assert runner_args(cfg)[0] == "--inference-batcher"
    off = deployment_config({"worker": {"model": {"id": "m"}}, "inference_batcher": {"enabled": False}},
                            caller="local")
    assert off["inference_batcher"]["enabled"] is False
    assert "inference_batcher" not in deployment_config({"worker": {"model": {"id": "m"}}}, caller="local")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with isolated_home(tmp_path_factory, "batching_home"):
        yield Client()


def test_a_deployment_batches_and_the_registry_shows_element_types(client, tmp_path) -> None:
    client.upload_model(write_model(tmp_path / "batched", BATCHED, model_id="batched"))
    nodepool = Nodepool("local", compute_cluster_id="local", client=client)
    with pytest.raises(ControlPlaneError, match="inference_batcher.max_latency_ms"):
        nodepool.create_deployment("batched", worker={"model": {"id": "batched"}},
                                   inference_batcher={"max_latency_ms": "fast"})
    deployment = nodepool.create_deployment(
        "batched", worker={"model": {"id": "batched"}},
        inference_batcher={"enabled": True, "max_batch_size": 8, "max_latency_ms": 50})
    deployment.wait_until_ready(120)
    assert deployment.config["inference_batcher"]["max_batch_size"] == 8
    model = client.model("batched")
    sig = inspect.signature(model.predict)
    assert [str(p) for p in sig.parameters.values()][:2] == ["x: int", "tag: str"]
    assert sig.return_annotation is str
    results = run_concurrently(model.predict, [(i, "d") for i in range(32)], threads=16)
    assert results == [f"d:{2 * i}" for i in range(32)]
    assert max(model.batch_sizes()) > 1
    assert any("inference batcher: predict" in line for line in deployment.logs(50))


def test_the_next_batch_runs_while_the_last_ones_replies_are_still_going_out() -> None:
    # submit_nowait's callbacks (the ipc plane's reply encoding and sending) run off the batch
    # thread: a slow reply of batch 1 must not hold the model idle for batch 2.
    from jupyter_deploy.model._batcher import Batcher, BatcherSettings

    ran: list[list[int]] = []
    release = threading.Event()
    second_ran = threading.Event()

    def run_batch(batch: list) -> list:
        ran.append(list(batch))
        if len(ran) == 2:
            second_ran.set()
        return [x * 10 for x in batch]

    got: list = []

    def slow_then(outcome) -> None:
        got.append(outcome)
        release.wait(10)

    b = Batcher("m", run_batch, BatcherSettings(max_batch_size=1, max_latency_ms=1))
    try:
        b.submit_nowait(1, 5.0, slow_then)
        b.submit_nowait(2, 5.0, got.append)
        assert second_ran.wait(5), "the second batch waited for the first one's reply to be sent"
        release.set()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [10, 20]  # replies still go out in batch order
    finally:
        release.set()
        b.close()
