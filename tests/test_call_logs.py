"""Access records, inference logs and metrics: a real daemon, real runners, the public API and the CLI."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from daemon_helpers import daemon_pid, isolated_home, until, wait_for

from jupyter_deploy import Client, Deployment, ModelError, Nodepool, NotFoundError
from jupyter_deploy.notebook.widgets import DeploymentCard

pytestmark = pytest.mark.timeout(240)

ECHO = '''
import time
from typing import Iterator
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        if text == "boom":
            raise ValueError("no boom here")
        return "echo: " + text

    @ModelClass.method
    def size(self, data: bytes) -> int:
        return len(data)

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{text}{i}"

    @ModelClass.method
    def stream(self, words: Iterator[str]) -> Iterator[str]:
        for w in words:
            yield w.upper()

    @ModelClass.method
    def ticks(self, n: int, delay: float) -> Iterator[int]:
        for i in range(n):
            time.sleep(delay)
            yield i

    @ModelClass.method
    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "logs_home") as home:
        yield home


@pytest.fixture
def client(home):
    """A new Client per test: the last test restarts the daemon."""
    return Client()


@pytest.fixture(scope="module")
def echo(home, tmp_path_factory):
    """The model `echo` deployed as `echo` (access records only: inference_logger's default mode none)."""
    client = Client()
    root = tmp_path_factory.mktemp("echo")
    (root / "1").mkdir()
    (root / "1" / "model.py").write_text(ECHO)
    (root / "config.yaml").write_text("model:\n  id: echo\n")
    (root / "requirements.txt").write_text("")
    client.upload_model(root)
    deployment = Nodepool("local", compute_cluster_id="local", client=client).create_deployment(
        "echo", worker={"model": {"id": "echo"}})
    deployment.wait_until_ready(120)
    return deployment


def _logs(deployment: Deployment, n: int, inference: bool = False, since: float | None = None):
    """The deployment's records once at least ``n`` of them (after ``since``) arrived."""
    read = deployment.inference_logs if inference else deployment.access_logs
    return until(lambda: read(since=since), lambda df: len(df) >= n, 15, f"{n} records")


def test_every_call_leaves_an_access_record(client, echo):
    since = time.time()
    model = client.model("echo")
    assert model.predict("hi") == "echo: hi"
    assert list(model.generate("x", n=2)) == ["x0", "x1"]
    assert list(model.stream(iter(["a", "b"]))) == ["A", "B"]
    with pytest.raises(ModelError, match="no boom here"):
        model.predict("boom")

    df = _logs(echo, 4, since=since)
    assert list(df.columns) == ["timestamp", "request_id", "caller", "method", "status", "latency_ms",
                                "bytes_in", "bytes_out"]
    assert list(df.method) == ["predict", "generate", "stream", "predict"]
    assert list(df.status) == ["OK", "OK", "OK", "UNKNOWN"]  # a model exception is gRPC UNKNOWN
    assert set(df.caller) == {"local"}
    assert (df.latency_ms > 0).all() and (df.bytes_in > 0).all()
    assert list(df.bytes_out > 0) == [True, True, True, False]
    assert df.request_id.is_unique
    assert str(df.timestamp.dt.tz) == "UTC" and df.timestamp.is_monotonic_increasing
    # No inference logger: the inference logs carry the same rows, without inputs or outputs.
    inference = _logs(echo, 4, inference=True, since=since)
    assert list(inference.request_id) == list(df.request_id)
    assert inference.inputs.isna().all() and inference.outputs.isna().all()


def test_a_stream_the_caller_cancels_is_recorded_as_cancelled(client, echo):
    since = time.time()
    model = client.model("echo")
    # Cancelled while the model waits for its next item, and while items pour out.
    for call in (lambda: model.ticks(1000, 0.2), lambda: model.generate("x", n=10**7),
                 lambda: model.stream(iter(["w"] * 10**6))):
        items = call()
        next(items)
        items.close()  # as %stream does when its cell is interrupted
    df = _logs(echo, 3, since=since)
    assert list(df.method) == ["ticks", "generate", "stream"]
    assert list(df.status) == ["CANCELLED", "CANCELLED", "CANCELLED"]


def test_the_inference_logger_records_inputs_and_outputs_by_mode(client, echo):
    # The mode changes while the replica runs: runners read their logger's settings again.
    pid = echo.status["replicas"][0]["pid"]
    echo.update(inference_logger={"mode": "all", "max_inline_bytes": 100})
    model = client.model("echo")
    wait_for(lambda: _mode_applied(model, echo, inputs=True), 15, "mode all to apply")
    since = time.time()
    big, small = os.urandom(1000), b"tiny"
    assert model.size(big) == 1000 and model.size(small) == 4
    assert list(model.stream(iter(["a", "b"]))) == ["A", "B"]
    with pytest.raises(ModelError):
        model.predict("boom")
    big_row, small_row, stream_row, boom_row = _logs(echo, 4, inference=True, since=since).to_dict("records")
    # Media over the cap by reference (size and sha256), under it with the bytes too.
    assert big_row["inputs"] == {"data": {"bytes": {"size": 1000, "sha256": hashlib.sha256(big).hexdigest()}}}
    assert big_row["outputs"] == 1000
    assert base64.b64decode(small_row["inputs"]["data"]["bytes"]["data_b64"]) == small
    assert stream_row["inputs"] == {"words": ["a", "b"]} and stream_row["outputs"] == ["A", "B"]
    assert boom_row["inputs"] == {"text": "boom"}
    assert boom_row["outputs"]["error"]["type"] == "ValueError"
    assert "no boom here" in boom_row["outputs"]["error"]["message"]

    echo.update(inference_logger={"mode": "predictions"})
    wait_for(lambda: _mode_applied(model, echo, inputs=False), 15, "predictions only")
    assert echo.status["replicas"][0]["pid"] == pid  # no restart was needed


def _mode_applied(model, deployment, inputs: bool) -> bool:
    since = time.time()
    model.predict("probe")
    last = until(lambda: deployment.inference_logs(since=since), len, 15, "the probe's record").iloc[-1]
    return (last.inputs is not None) == inputs and last.outputs == "echo: probe"


def test_only_the_owner_reads_logs_and_metrics(client, echo):
    _, token = client.create_user("alice")
    alice = Client(pat=token)
    for deployment in (Deployment("echo", user_id="local", client=alice), Deployment("echo", client=alice)):
        for read in (deployment.access_logs, deployment.inference_logs, deployment.metrics):
            with pytest.raises(NotFoundError, match="not found"):
                read()
    assert len(echo.access_logs()) > 0  # the owner still does


def test_the_cli_prints_inference_logs(echo, home):
    model = Client().model("echo")
    model.predict("from the cli test")
    env = {**os.environ, "JUPYTER_DEPLOY_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "jupyter_deploy", "logs", "echo", "--inference", "--lines", "50"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["timestamp", "request_id", "caller", "method", "status", "latency_ms", "bytes_in",
                              "bytes_out", "inputs", "outputs"]
    assert any('"echo: from the cli test"' in row and " local " in row for row in rows), out.stdout


def test_metrics_count_requests_errors_latency_and_calls_in_flight(client, echo):
    model = client.model("echo")
    before = echo.metrics()
    for i in range(5):
        model.predict(f"m{i}")
    with pytest.raises(ModelError):
        model.predict("boom")
    m = until(echo.metrics, lambda m: m["requests"] >= before["requests"] + 6, 15, "the calls to be counted")
    assert (m["requests"], m["errors"]) == (before["requests"] + 6, before["errors"] + 1)
    assert m["requests_last_minute"] >= 6 and m["errors_last_minute"] >= 1
    assert 0 < m["p50_ms"] <= m["p99_ms"]
    assert m["ready_replicas"] == 1 and m["state"] == "RUNNING"

    threads = [threading.Thread(target=model.slow, args=(3.0,)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        m = until(echo.metrics, lambda m: m["in_flight"] == 3, 10, "three calls in flight")
        assert m["queue_depth"] == 0  # the runner serves 32 at once
        card = DeploymentCard(echo)
        assert "3 in flight" in card.summary() and "requests" in card.metrics_html.value
        card.close()
    finally:
        for t in threads:
            t.join(30)
    until(echo.metrics, lambda m: m["in_flight"] == 0, 10, "nothing in flight")
    out = subprocess.run([sys.executable, "-m", "jupyter_deploy", "deployment", "metrics", "echo"],
                         capture_output=True, text=True, timeout=60, env={**os.environ}, check=False)
    assert out.returncode == 0 and "p99_ms: " in out.stdout and "in_flight: 0" in out.stdout, out.stderr


def test_retention_keeps_the_newest_records(client, echo):
    echo.update(inference_logger={"mode": "predictions", "max_records": 5})
    model = client.model("echo")
    texts = [f"keep{i}" for i in range(12)]
    for text in texts:
        model.predict(text)
    df = until(echo.inference_logs, lambda d: len(d) <= 5 and "echo: keep11" in list(d.outputs), 15,
               "retention to drop all but 5")
    assert list(df.outputs) == [f"echo: {t}" for t in texts[-len(df):]]
    echo.update(inference_logger={"mode": "predictions", "max_records": 100_000, "max_age_seconds": 1})
    wait_for(lambda: echo.access_logs().empty, 20, "records past the age limit to go")
    echo.update(inference_logger={"mode": "predictions", "max_age_seconds": 7 * 86400})  # (updates merge)


def test_records_outlive_a_sigkill_of_the_runner_and_of_the_daemon(client, echo, home):
    model = client.model("echo")
    wait_for(lambda: _mode_applied(model, echo, inputs=False), 15, "predictions mode")
    [replica] = echo.status["replicas"]
    os.kill(daemon_pid(home), signal.SIGKILL)  # nobody collects the records while we call
    texts = [f"kill{i}" for i in range(20)]
    for text in texts:  # the route is cached: straight to the runner
        assert model.predict(text) == "echo: " + text
    time.sleep(1.2)  # the bound: a SIGKILL may lose the last second of records, no more
    os.killpg(replica["pid"], signal.SIGKILL)

    deployment = Client().deployment("echo")  # a new daemon reads what the dead runner left
    deployment.wait_until_ready(60)
    df = until(lambda: deployment.inference_logs(limit=200), lambda d: _has(d, texts), 15,
               "the records made before the kills")
    assert df.request_id.is_unique  # read once, not again by the new daemon


def _has(df, texts) -> bool:
    seen = {o for o in df.outputs if isinstance(o, str)}
    return all(f"echo: {t}" in seen for t in texts)


def test_logged_values_are_json_with_media_by_reference():
    """What the inference log keeps of each wire type (the codec encodes, the recorder's value_json reads)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from jupyter_deploy import Concept
    from jupyter_deploy.model.codec import encode_value
    from jupyter_deploy.model.signature import type_node
    from jupyter_deploy.runner._telemetry import value_json

    def logged(ann, value, cap=64):
        return value_json(encode_value(type_node(ann, "test"), value, "test"), cap)

    assert logged(dict, {"a": [1, 2.5, None, True], "b": 2**70}) == {"a": [1, 2.5, None, True], "b": 2**70}
    assert logged(float, float("nan")) == "nan"  # JSON has no NaN
    small = logged(np.ndarray, np.arange(4, dtype=np.int16).reshape(2, 2))["ndarray"]
    assert (small["dtype"], small["shape"], small["values"]) == ("<i2", [2, 2], [[0, 1], [2, 3]])
    big = logged(np.ndarray, np.zeros(1000))["ndarray"]
    assert big["size"] == 8000 and "values" not in big and len(big["sha256"]) == 64
    image = logged(Image.Image, Image.new("RGB", (30, 20)))["image"]
    assert (image["width"], image["height"], image["size"]) == (30, 20, 1800) and "data_b64" not in image
    table = logged(pd.DataFrame, pd.DataFrame({"x": [1, 2]}), cap=10_000)["dataframe"]
    assert table["columns"] == ["x"] and table["split"]["data"] == [[1], [2]]
    assert logged(Concept, Concept(id="cat", name="Cat", value=0.9)) == {
        "concept": {"id": "cat", "name": "Cat", "value": 0.9}}
