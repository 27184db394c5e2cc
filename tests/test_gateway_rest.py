"""The HTTP gateway's native REST, streaming and WebSocket endpoints, against a real daemon (which
starts the gateway), real runners and real clients (httpx, websockets): typed JSON, media and
multipart, errors and bad input, access for two users, Server-Sent Events and NDJSON, a client
that leaves mid-stream, 100 concurrent streams, supervision of the gateway process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from daemon_helpers import isolated_home, wait_for

from jupyter_deploy import Client

pytestmark = pytest.mark.timeout(180)

BODY_LIMIT = 1 << 20  # configured small, so that the 413 test sends little

MODEL = '''
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from jupyter_deploy import Concept, ModelClass


class Kinds(ModelClass):
    @ModelClass.method
    def predict(self, text: str, n: int = 1) -> str:
        """Echo the text n times."""
        return "echo: " + text * n

    @ModelClass.method
    def mix(self, a: float, b: int, flag: bool = False, tags: list[str] = [], meta: dict = {},
            maybe: "int | None" = None) -> dict:
        return {"sum": a + b, "flag": flag, "tags": tags, "meta": meta, "maybe": maybe}

    @ModelClass.method
    def size(self, image: Image.Image) -> dict[str, int]:
        return {"width": image.width, "height": image.height}

    @ModelClass.method
    def invert(self, image: Image.Image) -> Image.Image:
        return ImageOps.invert(image.convert("RGB"))

    @ModelClass.method
    def double(self, x: np.ndarray) -> np.ndarray:
        return x * 2

    @ModelClass.method
    def table(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(total=df.sum(axis=1, numeric_only=True))

    @ModelClass.method
    def label(self, text: str) -> list[Concept]:
        return [Concept(id=text, name=text.upper(), value=0.5)]

    @ModelClass.method
    def blob(self, data: bytes, note: str = "") -> dict:
        return {"size": len(data), "note": note}

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(n):
            yield f"{text}{i}"

    @ModelClass.method
    def fails_late(self, n: int) -> Iterator[int]:
        for i in range(n):
            yield i
        raise RuntimeError("ran out")

    @ModelClass.method
    def slow(self, marker: str, n: int = 1000) -> Iterator[int]:
        try:
            for i in range(n):
                time.sleep(0.02)
                yield i
        finally:
            Path(marker).write_text("stopped")

    @ModelClass.method
    def stream(self, words: Iterator[str], sep: str = " ") -> Iterator[str]:
        for w in words:
            yield w + sep

    @ModelClass.method
    def boom(self, x: int) -> int:
        raise ValueError(f"boom {x}")
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from conftest import write_model

    with isolated_home(tmp_path_factory, "gateway_rest",
                       JUPYTER_DEPLOY_GATEWAY_BODY_LIMIT=str(BODY_LIMIT)) as home:
        client = Client()
        folder = write_model(tmp_path_factory.mktemp("kinds"), MODEL, model_id="kinds")
        client.deploy(folder, autoscale_config={"min_replicas": 1})
        _, bob_token = client.create_user("bob")
        url = client.gateway_url
        token = (home / "local.token").read_text().strip()
        wait_for(lambda: _live(url), 30, "the gateway to answer")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            yield {"client": client, "home": home, "url": url, "token": token, "bob": bob_token,
                   "http": http, "tmp": tmp_path_factory.mktemp("gateway_rest_tmp")}
        client.close()


def _live(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def call(env, method: str, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return env["http"].post(f"/v1/deployments/kinds/methods/{method}", content=content, **kwargs)


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- the process


def test_the_daemon_publishes_the_gateway_and_the_cli_shows_it(env):
    record = json.loads((env["home"] / "daemon.json").read_text())
    assert record["gateway"] == env["url"] == env["client"].gateway_url
    assert env["url"].startswith("http://127.0.0.1:")
    cli = [sys.executable, "-m", "jupyter_deploy"]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert f"gateway  {env['url']}" in status.stdout, status.stdout
    gateway = subprocess.run([*cli, "gateway", "status"], capture_output=True, text=True, timeout=60)
    assert gateway.returncode == 0, gateway.stdout + gateway.stderr
    assert "answering" in gateway.stdout and env["url"] in gateway.stdout


# ---------------------------------------------------------------- unary calls, typed JSON


def test_unary_calls_take_and_give_typed_json(env):
    assert call(env, "predict", {"text": "hi", "n": 2}).json() == {"output": "echo: hihi"}
    assert call(env, "predict", {"text": "hi"}).json() == {"output": "echo: hi"}  # the default applies
    out = call(env, "mix", {"a": 1.5, "b": 2, "flag": True, "tags": ["x"], "meta": {"k": [1, None]}}).json()
    assert out == {"output": {"sum": 3.5, "flag": True, "tags": ["x"], "meta": {"k": [1, None]}, "maybe": None}}
    assert call(env, "mix", {"a": 1, "b": 2, "maybe": 7}).json()["output"]["maybe"] == 7
    assert call(env, "label", {"text": "cat"}).json() == {"output": [{"id": "cat", "name": "CAT", "value": 0.5}]}


def test_media_arrays_and_tables(env):
    png = _png(31, 17)
    assert call(env, "size", {"image": {"base64": base64.b64encode(png).decode()}}).json() == {
        "output": {"width": 31, "height": 17}}
    inverted = call(env, "invert", {"image": {"base64": base64.b64encode(png).decode()}}).json()["output"]
    assert inverted["format"] == "PNG" and (inverted["width"], inverted["height"]) == (31, 17)
    from PIL import Image

    pixel = Image.open(io.BytesIO(base64.b64decode(inverted["base64"]))).getpixel((0, 0))
    assert pixel == (245, 55, 225)
    out = call(env, "double", {"x": {"dtype": "float32", "shape": [2, 2], "data": [1, 2, 3, 4]}}).json()
    assert out == {"output": {"dtype": "float32", "shape": [2, 2], "data": [2.0, 4.0, 6.0, 8.0]}}
    import numpy as np

    npy = io.BytesIO()
    np.save(npy, np.arange(3, dtype=np.int64))
    out = call(env, "double", {"x": {"base64": base64.b64encode(npy.getvalue()).decode()}}).json()
    assert out["output"]["data"] == [0, 2, 4] and out["output"]["dtype"] == "int64"
    table = {"columns": ["a", "b"], "index": [10, 11], "data": [[1, 2.5], [3, 4.5]]}
    out = call(env, "table", {"df": table}).json()["output"]
    assert out["columns"] == ["a", "b", "total"] and out["index"] == [10, 11]
    assert out["data"] == [[1, 2.5, 3.5], [3, 4.5, 7.5]]


def test_multipart_form_data_carries_files_and_fields(env):
    files = {"image": ("cat.png", _png(8, 6), "image/png")}
    r = env["http"].post("/v1/deployments/kinds/methods/size", files=files)
    assert r.json() == {"output": {"width": 8, "height": 6}}, r.text
    r = env["http"].post("/v1/deployments/kinds/methods/blob", files={"data": ("x.bin", b"\0" * 1000)},
                         data={"note": "a note"})
    assert r.json() == {"output": {"size": 1000, "note": "a note"}}, r.text
    r = env["http"].post("/v1/deployments/kinds/methods/blob", content=b"--other\r\n\r\nx",
                         headers={"Content-Type": "multipart/form-data; boundary=expected"})
    assert r.status_code == 400 and "boundary" in r.json()["error"]["message"]


def test_the_methods_are_listed_with_json_schema(env):
    listing = env["http"].get("/v1/deployments/kinds/methods").json()
    by_name = {m["name"]: m for m in listing["methods"]}
    assert listing["deployment_id"] == "kinds" and "stream" in by_name
    predict = by_name["predict"]
    assert predict["parameters"]["properties"]["text"] == {"type": "string"}
    assert predict["parameters"]["properties"]["n"] == {"type": "integer", "default": 1}
    assert predict["parameters"]["required"] == ["text"] and predict["result"] == {"type": "string"}
    assert by_name["generate"]["shape"] == "server_stream"
    assert by_name["stream"]["stream_items"] == {"name": "words", "type": "string"}
    one = env["http"].get("/v1/users/local/apps/default/models/kinds/methods/double").json()
    assert one["parameters"]["properties"]["x"]["title"] == "numpy.ndarray"


# ---------------------------------------------------------------- errors and bad input


@pytest.mark.parametrize("body, parameter, words", [
    ("{not json", None, "not valid JSON"),
    ('["a list"]', None, "JSON object of named arguments"),
    ({"text": 3}, "text", "expected string, got number 3"),
    ({"text": "x", "n": "two"}, "n", "expected integer, got string 'two'"),
    ({"text": "x", "colour": "red"}, "colour", "unexpected parameter 'colour'"),
    ({}, "text", "missing required parameter(s): text"),
])
def test_bad_input_is_400_naming_the_parameter(env, body, parameter, words):
    r = call(env, "predict", body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT" and words in error["message"]
    assert error.get("parameter") == parameter


def test_bad_media_and_arrays_are_400(env):
    r = call(env, "size", {"image": {"base64": "***"}})
    assert r.status_code == 400 and r.json()["error"]["parameter"] == "image"
    r = call(env, "size", {"image": "just a string"})
    assert r.status_code == 400 and '{"base64": ...}' in r.json()["error"]["message"]
    r = call(env, "double", {"x": {"dtype": "float32", "shape": [3], "data": [1, 2]}})
    assert r.status_code == 400 and "shape" in r.json()["error"]["message"]
    r = call(env, "size", {"image": {"base64": base64.b64encode(b"not an image").decode()}})
    assert r.status_code == 400 and r.json()["error"]["parameter"] == "image", r.text


def test_model_errors_are_500_with_the_message_and_no_traceback(env):
    r = call(env, "boom", {"x": 4})
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "MODEL_ERROR", "message": "ValueError: boom 4", "type": "ValueError"}}
    assert "Traceback" not in r.text


def test_unknown_methods_deployments_and_paths_are_404(env):
    r = call(env, "nope", {})
    assert r.status_code == 404 and "methods: predict, mix" in r.json()["error"]["message"]
    r = env["http"].post("/v1/deployments/nothere/methods/predict", json={})
    assert r.status_code == 404 and "nothere" in r.json()["error"]["message"]
    assert env["http"].get("/v1/nothing").status_code == 404
    assert env["http"].get("/v1/deployments/kinds/methods/predict/extra").status_code == 404


def test_a_body_over_the_limit_is_413_naming_it(env):
    big = {"data": {"base64": base64.b64encode(b"x" * BODY_LIMIT).decode()}}
    r = call(env, "blob", big)
    assert r.status_code == 413, r.text
    assert f"limit of {BODY_LIMIT} bytes" in r.json()["error"]["message"]
    # Streamed without a length (chunked), it is cut off at the limit too.
    r = env["http"].post("/v1/deployments/kinds/methods/blob", content=iter([b"x" * 65536] * 20))
    assert r.status_code == 413
    assert call(env, "predict", {"text": "still serving"}).json()["output"] == "echo: still serving"


# ---------------------------------------------------------------- access


def test_tokens_and_access_rules(env):
    url = env["url"] + "/v1/deployments/kinds/methods/predict"
    r = httpx.post(url, json={"text": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(url, json={"text": "x"}, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    r = httpx.post(url, json={"text": "x"}, headers={"Authorization": f"Key {env['token']}"})
    assert r.json() == {"output": "echo: x"}  # Clarifai's scheme works too
    bob = {"Authorization": f"Bearer {env['bob']}"}
    # Bob's own deployments have no "kinds"; local's private model is not his to see.
    r = httpx.post(url, json={"text": "x"}, headers=bob)
    assert r.status_code == 404 and "not found for user 'bob'" in r.json()["error"]["message"]
    model_url = env["url"] + "/v1/users/local/apps/default/models/kinds/methods"
    r = httpx.post(model_url + "/predict", json={"text": "x"}, headers=bob)
    assert r.status_code == 404 and "model local/default/models/kinds not found" in r.json()["error"]["message"]
    assert httpx.get(model_url, headers=bob).status_code == 404
    r = httpx.post(model_url + "/predict?deployment_id=kinds", json={"text": "x"}, headers=bob)
    assert r.status_code == 404
    # Made public, bob sees it but calls it only through a deployment of his own.
    env["client"].model("kinds").set_visibility("public")
    try:
        r = httpx.post(model_url + "/predict", json={"text": "x"}, headers=bob)
        assert r.status_code == 409 and "has no deployment" in r.json()["error"]["message"], r.text
        r = httpx.post(model_url + "/predict?deployment_id=kinds", json={"text": "x"}, headers=bob)
        assert r.status_code == 404  # local's deployment stays local's
    finally:
        env["client"].model("kinds").set_visibility("private")
    r = httpx.post(model_url + "/predict", json={"text": "x"}, headers={"Authorization": f"Bearer {env['token']}"})
    assert r.json() == {"output": "echo: x"}


def test_a_revoked_token_stops_working(env):
    token_id, token = env["client"].create_token()
    headers = {"Authorization": f"Bearer {token}"}
    url = env["url"] + "/v1/deployments/kinds/methods/predict"
    assert httpx.post(url, json={"text": "a"}, headers=headers).status_code == 200
    env["client"].revoke_token(token_id)
    # The route cached for that token is renewed within seconds, and the renewal is refused.
    wait_for(lambda: httpx.post(url, json={"text": "a"}, headers=headers).status_code == 401, 15,
             "the revoked token to be refused")


# ---------------------------------------------------------------- streams


def _events(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", "message"), lines["data"]))
    return out


def test_server_streams_as_sse_and_ndjson(env):
    r = call(env, "generate", {"text": "t", "n": 3})
    assert r.headers["content-type"] == "text/event-stream"
    assert _events(r.text) == [("message", '{"output":"t0"}'), ("message", '{"output":"t1"}'),
                               ("message", '{"output":"t2"}'), ("end", "{}")]
    r = call(env, "generate", {"text": "t", "n": 2}, headers={"Accept": "application/x-ndjson"})
    assert r.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in r.text.splitlines()] == [{"output": "t0"}, {"output": "t1"}, {"end": True}]
    r = call(env, "fails_late", {"n": 2})
    events = _events(r.text)
    assert events[:2] == [("message", '{"output":0}'), ("message", '{"output":1}')]
    assert events[2][0] == "error" and "RuntimeError: ran out" in events[2][1]
    r = call(env, "generate", {"text": 5})
    assert r.status_code == 400 and r.json()["error"]["parameter"] == "text"


def test_bidirectional_over_http_and_websocket(env):
    r = call(env, "stream", {"words": ["a", "b"], "sep": "!"}, headers={"Accept": "application/x-ndjson"})
    assert [json.loads(line) for line in r.text.splitlines()] == [{"output": "a!"}, {"output": "b!"}, {"end": True}]
    r = call(env, "stream", {"sep": "!"})
    assert r.status_code == 400 and "/stream" in r.json()["error"]["message"]

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    ws_url = env["url"].replace("http", "ws") + "/v1/deployments/kinds/methods/stream/stream"

    async def session() -> list:
        got = []
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {env['token']}"}) as ws:
            await ws.send(json.dumps({"arguments": {"sep": "-"}}))
            for word in ("x", "y", "z"):
                await ws.send(json.dumps(word))
                got.append(json.loads(await ws.recv()))  # an answer per item, as it comes
            await ws.send(json.dumps({"end": True}))
            got += [json.loads(m) async for m in ws]
        bad = []
        with pytest.raises(ConnectionClosedError) as closed:
            async with connect(ws_url, additional_headers={"Authorization": f"Bearer {env['token']}"}) as ws:
                await ws.send(json.dumps({"arguments": {}}))
                await ws.send(json.dumps(42))
                async for m in ws:
                    bad.append(json.loads(m))
        assert closed.value.rcvd.code == 4400
        async with connect(ws_url) as ws:
            with pytest.raises(ConnectionClosedError):
                async for m in ws:
                    bad.append(json.loads(m))
        return got, bad

    got, bad = asyncio.run(session())
    assert got == [{"output": "x-"}, {"output": "y-"}, {"output": "z-"}, {"end": True}]
    assert bad[0]["error"]["parameter"] == "words" and "expected string, got number 42" in bad[0]["error"]["message"]
    assert bad[1]["error"]["code"] == "UNAUTHENTICATED"


def test_a_client_leaving_mid_stream_stops_the_model(env):
    marker = env["tmp"] / "slow.stopped"
    with env["http"].stream("POST", "/v1/deployments/kinds/methods/slow",
                            json={"marker": str(marker), "n": 1000}) as r:
        lines = r.iter_lines()
        first = [next(lines) for _ in range(4)]  # two events, each a data line and a blank one
        time.sleep(0.3)  # a slow reader: what piles up meanwhile comes in one write
    assert first[0] == 'data: {"output":0}'
    # The connection is closed: the gateway cancels the runner's stream, which stops the generator.
    wait_for(lambda: marker.exists(), 15, "the model's generator to stop")
    assert marker.read_text() == "stopped"


def test_a_hundred_concurrent_streams(env):
    async def one(client: httpx.AsyncClient, i: int) -> list[str]:
        r = await client.post("/v1/deployments/kinds/methods/generate", json={"text": f"s{i}-", "n": 20},
                              headers={"Accept": "application/x-ndjson"})
        return [json.loads(line).get("output") for line in r.text.splitlines()]

    async def many() -> list[list[str]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=env["url"], timeout=60, limits=limits,
                                     headers={"Authorization": f"Bearer {env['token']}"}) as client:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(100))), 120)

    results = asyncio.run(many())
    for i, items in enumerate(results):
        assert items == [f"s{i}-{k}" for k in range(20)] + [None], items


def test_a_hundred_concurrent_unary_calls_each_get_their_own_answer(env):
    """Concurrent unary calls to one replica go to it combined (``gateway._combine``): each must
    still get its own answer and its own model error, and be recorded (bad input is refused by
    the gateway itself, beside them)."""
    from jupyter_deploy import Deployment

    def body(i: int) -> tuple[str, dict]:
        return [("predict", {"text": f"c{i}"}), ("boom", {"x": i}), ("predict", {"text": i})][i % 3]

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, dict]:
        method, payload = body(i)
        r = await client.post(f"/v1/deployments/kinds/methods/{method}", json=payload)
        return r.status_code, r.json()

    async def many() -> list[tuple[int, dict]]:
        async with httpx.AsyncClient(base_url=env["url"], timeout=60, limits=httpx.Limits(max_connections=100),
                                     headers={"Authorization": f"Bearer {env['token']}"}) as client:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(100))), 120)

    since = time.time()
    for i, (status, out) in enumerate(asyncio.run(many())):
        if i % 3 == 0:
            assert (status, out) == (200, {"output": f"echo: c{i}"})
        elif i % 3 == 1:
            assert (status, out["error"]["message"]) == (500, f"ValueError: boom {i}")
        else:
            assert status == 400 and out["error"]["parameter"] == "text", out
    deployment = Deployment("kinds", client=env["client"])
    wait_for(lambda: len(deployment.access_logs(since=since)) >= 67, 20, "67 access records")
    time.sleep(0.5)  # and no more: each call that reached the model once
    logs = deployment.access_logs(since=since)
    assert sorted(logs.status.value_counts().to_dict().items()) == [("OK", 34), ("UNKNOWN", 33)]


# ---------------------------------------------------------------- supervision


def test_a_killed_gateway_comes_back_on_the_same_address(env):
    record = json.loads((env["home"] / "gateway.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)
    wait_for(lambda: json.loads((env["home"] / "gateway.json").read_text())["pid"] != record["pid"], 30,
             "the daemon to start the gateway again")
    wait_for(lambda: _live(env["url"]), 30, "the new gateway to answer")
    assert call(env, "predict", {"text": "back"}).json() == {"output": "echo: back"}
    assert json.loads((env["home"] / "gateway.json").read_text())["restarts"] >= 1


# ---------------------------------------------------------------- describe


def test_describe_gives_the_endpoints_and_a_curl_line_that_works(env):
    d = env["client"].deployment("kinds").describe()
    assert d["state"] == "RUNNING" and d["model"] == "local/default/models/kinds"
    assert d["config"]["autoscale_config"]["min_replicas"] == 1
    e = d["endpoints"]
    base = env["url"] + "/v1/deployments/kinds"
    assert e["rest"]["predict"] == base + "/methods/predict" and e["methods"] == base + "/methods"
    assert e["websocket"] == {"stream": base.replace("http", "ws", 1) + "/methods/stream/stream"}
    assert "generate" in e["server_sent_events"] and "openai" not in e
    assert e["open_inference_protocol"]["rest"] == env["url"] + "/v2/models/kinds"
    out = subprocess.run(["bash", "-c", e["curl"] + " -s"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "JUPYTER_DEPLOY_PAT": env["token"]})
    assert json.loads(out.stdout) == {"output": "echo: hello"}, out.stdout + out.stderr
    cli = subprocess.run([sys.executable, "-m", "jupyter_deploy", "deployment", "get", "kinds"],
                         capture_output=True, text=True, timeout=60)
    assert json.loads(cli.stdout)["endpoints"]["curl"] == e["curl"]
