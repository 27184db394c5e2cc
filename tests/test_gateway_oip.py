"""The gateway's Open Inference Protocol v2, REST (tritonclient.http, unchanged, and httpx) and gRPC
(``inference.GRPCInferenceService`` through grpc stubs of the protocol's messages; tritonclient.grpc
from a virtual environment of its own where one is given), against a real daemon, its gateway and
real runners: health, metadata, JSON and binary tensors, method choice, errors, access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import grpc
import httpx
import numpy as np
import pytest
from daemon_helpers import isolated_home, wait_for

from jupyter_deploy import Client

pytestmark = pytest.mark.timeout(180)

MODEL = '''
from typing import Iterator

import numpy as np
from PIL import Image

from jupyter_deploy import ModelClass


class Tensors(ModelClass):
    @ModelClass.method
    def predict(self, text: str, n: int = 1) -> str:
        return "echo: " + text * n

    @ModelClass.method
    def scale(self, x: np.ndarray, factor: float = 2.0) -> np.ndarray:
        return x * np.asarray(factor, dtype=x.dtype)

    @ModelClass.method
    def stats(self, values: list[float], flags: list[bool] = []) -> dict:
        return {"mean": sum(values) / len(values), "count": len(values), "any": any(flags)}

    @ModelClass.method
    def size(self, image: Image.Image) -> int:
        return image.width

    @ModelClass.method
    def generate(self, text: str) -> Iterator[str]:
        yield text

    @ModelClass.method
    def boom(self, text: str) -> str:
        raise ValueError("boom")
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from conftest import write_model

    with isolated_home(tmp_path_factory, "gateway_oip") as home:
        client = Client()
        folder = write_model(tmp_path_factory.mktemp("tensors"), MODEL, model_id="tensors")
        client.deploy(folder, autoscale_config={"min_replicas": 1})
        _, bob = client.create_user("bob")
        url = client.gateway_url
        wait_for(lambda: httpx.get(url + "/v2/health/live", timeout=2).status_code == 200, 30, "the gateway")
        token = (home / "local.token").read_text().strip()
        grpc_address = client.call("GetInfo", __import__("jupyter_deploy.proto.control_pb2",
                                                         fromlist=["x"]).InfoRequest()).gateway_grpc_address
        yield {"client": client, "url": url, "token": token, "bob": bob, "grpc": grpc_address}
        client.close()


@pytest.fixture(scope="module")
def triton(env):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=env["url"].removeprefix("http://"))


# ---------------------------------------------------------------- REST, tritonclient.http


def test_health_and_server_metadata_need_no_token(env, triton):
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "jupyter_deploy" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(env, triton):
    h = {"Authorization": f"Bearer {env['token']}"}  # new each time: tritonclient adds to it
    assert triton.is_model_ready("tensors", headers=h)
    meta = triton.get_model_metadata("tensors", headers=h)
    assert meta["name"] == "tensors" and meta["platform"] == "jupyter_deploy"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [1]},
                              {"name": "n", "datatype": "INT64", "shape": [1]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [1]}]
    version = meta["versions"][0]
    assert triton.get_model_metadata("tensors", model_version=version, headers=h)["versions"] == [version]
    r = httpx.get(env["url"] + "/v2/models/tensors?method=scale", headers=h).json()
    assert r["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1]}
    r = httpx.get(env["url"] + "/v2/models/tensors?method=size", headers=h)
    assert r.status_code == 400 and "parameter 'image'" in r.json()["error"]
    assert httpx.get(env["url"] + "/v2/models/tensors/versions/nope", headers=h).status_code == 404
    # A model id of the caller's names its default deployment too.
    assert httpx.get(env["url"] + "/v2/models/tensors/ready", headers=h).json() == {"name": "tensors", "ready": True}


def test_tritonclient_http_infers_with_binary_and_json_tensors(env, triton):
    import tritonclient.http as httpclient

    h = {"Authorization": f"Bearer {env['token']}"}  # new each time: tritonclient adds to it
    text = httpclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object))
    n = httpclient.InferInput("n", [1], "INT64")
    n.set_data_from_numpy(np.array([3], dtype=np.int64), binary_data=False)
    result = triton.infer("tensors", [text, n], headers=h)
    assert result.as_numpy("output").tolist() == [b"echo: hihihi"]
    x = httpclient.InferInput("x", [2, 3], "FP32")
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    x.set_data_from_numpy(data)
    for binary in (True, False):
        out = httpclient.InferRequestedOutput("output", binary_data=binary)
        result = triton.infer("tensors", [x], outputs=[out], headers=h, parameters={"method": "scale"})
        got = result.as_numpy("output")
        assert got.dtype == np.float32 and got.shape == (2, 3) and (got == data * 2).all()
    values = httpclient.InferInput("values", [4], "FP64")
    values.set_data_from_numpy(np.array([1.0, 2.0, 3.0, 6.0]))
    result = triton.infer("tensors", [values], headers=h, parameters={"method": "stats"})
    assert result.as_numpy("mean").tolist() == [3.0] and result.as_numpy("count").tolist() == [4]
    assert result.as_numpy("any").tolist() == [False]


def test_rest_errors(env, triton):
    from tritonclient.utils import InferenceServerException

    url = env["url"] + "/v2/models/tensors/infer"
    h = {"Authorization": f"Bearer {env['token']}"}  # new each time: tritonclient adds to it

    def infer(body) -> httpx.Response:
        return httpx.post(url, headers=h, content=json.dumps(body))

    r = infer({"inputs": [{"name": "text", "datatype": "INT64", "shape": [1], "data": [1]}]})
    assert r.status_code == 400 and "takes str (BYTES), got a INT64 tensor" in r.json()["error"]
    r = infer({"inputs": [{"name": "txt", "datatype": "BYTES", "shape": [1], "data": ["a"]}]})
    assert r.status_code == 400 and "no input 'txt'" in r.json()["error"]
    r = infer({"inputs": []})
    assert r.status_code == 400 and "missing input(s) text" in r.json()["error"]
    r = infer({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]})
    assert r.status_code == 400 and "got a tensor of 2 elements" in r.json()["error"]
    r = infer({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}],
               "parameters": {"method": "scale"}})
    assert r.status_code == 400 and "shape [3]" in r.json()["error"]
    r = infer({"inputs": [], "parameters": {"method": "generate"}})
    assert r.status_code == 400 and "streams" in r.json()["error"]
    r = infer({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
               "parameters": {"method": "boom"}})
    assert r.status_code == 500 and r.json() == {"error": "ValueError: boom"}
    assert httpx.post(url, headers=h, content=b"{nope").status_code == 400
    assert httpx.post(url, content=b"{}").status_code == 401
    with pytest.raises(InferenceServerException, match="no deployment or model 'nothere'"):
        triton.get_model_metadata("nothere", headers=h)


def test_access_for_another_user(env, triton):
    from tritonclient.utils import InferenceServerException

    bob = {"Authorization": f"Bearer {env['bob']}"}
    with pytest.raises(InferenceServerException, match="no deployment or model 'tensors'"):
        triton.get_model_metadata("tensors", headers=bob)
    r = httpx.post(env["url"] + "/v2/models/tensors/infer", headers=bob, content=json.dumps(
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}))
    assert r.status_code == 404
    assert httpx.get(env["url"] + "/v2/models/tensors/ready", headers=bob).status_code == 404


# ---------------------------------------------------------------- gRPC


def test_grpc_inference_service(env):
    from jupyter_deploy.proto import oip_pb2 as pb
    from jupyter_deploy.proto import oip_pb2_grpc

    meta = [("authorization", f"Bearer {env['token']}")]
    with grpc.insecure_channel(env["grpc"]) as channel:
        stub = oip_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10).name == "jupyter_deploy"
        assert stub.ModelReady(pb.ModelReadyRequest(name="tensors"), metadata=meta, timeout=10).ready
        m = stub.ModelMetadata(pb.ModelMetadataRequest(name="tensors"), metadata=meta, timeout=10)
        assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("text", "BYTES", [1]), ("n", "INT64", [1])]
        request = pb.ModelInferRequest(model_name="tensors", id="r1")
        request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"yo")
        response = stub.ModelInfer(request, metadata=meta, timeout=10)
        assert response.id == "r1" and response.outputs[0].name == "output"
        assert response.raw_output_contents[0] == len(b"echo: yo").to_bytes(4, "little") + b"echo: yo"
        data = np.arange(4, dtype=np.int32)
        request = pb.ModelInferRequest(model_name="tensors", raw_input_contents=[data.tobytes()])
        request.inputs.add(name="x", datatype="INT32", shape=[2, 2])
        request.parameters["method"].string_param = "scale"
        response = stub.ModelInfer(request, metadata=meta, timeout=10)
        out = response.outputs[0]
        got = np.frombuffer(response.raw_output_contents[0], dtype=np.int32).reshape(list(out.shape))
        assert out.datatype == "INT32" and (got == data.reshape(2, 2) * 2).all()
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(pb.ModelInferRequest(model_name="tensors"), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="tensors"), timeout=10,
                               metadata=[("authorization", f"Bearer {env['bob']}")])
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        bad = pb.ModelInferRequest(model_name="tensors")
        bad.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
        bad.parameters["method"].string_param = "boom"
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(bad, metadata=meta, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNKNOWN and "ValueError: boom" in e.value.details()


@pytest.fixture(scope="module")
def triton_grpc_python(tmp_path_factory) -> str:
    """A Python with tritonclient[grpc], which pins protobuf<7 where this project needs 7: a venv of
    its own over this environment's packages (grpcio and numpy are reused; protobuf 6 shadows 7)."""
    given = os.environ.get("JUPYTER_DEPLOY_TRITON_GRPC_PYTHON")
    if given:
        return given
    venv = tmp_path_factory.mktemp("triton_grpc_venv")
    python = str(venv / "bin" / "python")
    made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                          capture_output=True, text=True, timeout=120)
    if made.returncode == 0:
        made = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "tritonclient[grpc]"], capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        pytest.skip(f"could not install tritonclient[grpc] in a venv: {made.stderr.strip()[-300:]}")
    return python


def test_tritonclient_grpc_from_its_own_environment(env, triton_grpc_python):
    code = textwrap.dedent(f"""
        import numpy as np
        import tritonclient.grpc as grpcclient
        c = grpcclient.InferenceServerClient(url={env['grpc']!r})
        h = {{"authorization": "Bearer {env['token']}"}}
        assert c.is_server_live() and c.is_model_ready("tensors", headers=h)
        x = grpcclient.InferInput("x", [3], "FP64")
        x.set_data_from_numpy(np.array([1.0, 2.0, 3.0]))
        r = c.infer("tensors", [x], headers=h, parameters={{"method": "scale"}})
        print(r.as_numpy("output").tolist())
        t = grpcclient.InferInput("text", [1], "BYTES")
        t.set_data_from_numpy(np.array([b"hi"], dtype=object))
        print(c.infer("tensors", [t], headers=h).as_numpy("output").tolist())
    """)
    out = subprocess.run([triton_grpc_python, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[2.0, 4.0, 6.0]", "[b'echo: hi']"]
