"""A runner started with a verification key serves only calls that carry a valid route token.

One real runner process for the module, started the way the scheduler starts
one: the public route key and deployment id in its environment, its port learned
from ``--port-file``. Tokens are signed with the private key, which the runner
never gets.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import wait_for, write_model
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jupyter_deploy import _tokens, _wire
from jupyter_deploy.proto import runner_pb2 as pb
from jupyter_deploy.proto import runner_pb2_grpc

pytestmark = pytest.mark.timeout(60)

KEY = _tokens.derive_key(os.urandom(32), os.urandom(32))  # the deployment's private route key
PUBLIC = _tokens.public_bytes(KEY)
DEPLOYMENT = "echo"

MODEL = '''
import os
from collections.abc import Iterator
from pathlib import Path

from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return text

    @ModelClass.method
    def generate(self, text: str) -> Iterator[str]:
        yield text

    @ModelClass.method
    def stream(self, items: Iterator[str]) -> Iterator[str]:
        yield from items

    @ModelClass.method
    def secret(self, text: str) -> str:
        return os.environ.get("JUPYTER_DEPLOY_VERIFY_KEY", "")
'''


@contextlib.contextmanager
def signed_runner(root: Path) -> Iterator[tuple[subprocess.Popen, grpc.Channel]]:
    """A serving runner with a verification key, as the scheduler starts one; killed on exit."""
    model_dir = write_model(root / "model", MODEL)
    port_file = root / "runner.port"  # beside the folder, not in it: a hot reload compares folders
    env = {**os.environ, "JUPYTER_DEPLOY_VERIFY_KEY": PUBLIC.hex(), "DEPLOYMENT_ID": DEPLOYMENT}
    with open(root / "runner.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(model_dir),
                                 "--port-file", str(port_file)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 30, "the port file")
        assert proc.poll() is None, (root / "runner.log").read_text()
        port = int(port_file.read_text())
        assert f"listening on 127.0.0.1:{port}" in (root / "runner.log").read_text()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            wait_for(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                     == health_pb2.HealthCheckResponse.SERVING, 30, "the runner to serve")
            yield proc, channel
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    with signed_runner(tmp_path_factory.mktemp("model")) as (_, channel):
        yield channel


@pytest.fixture
def runner(channel: grpc.Channel) -> runner_pb2_grpc.RunnerStub:
    return runner_pb2_grpc.RunnerStub(channel)


def request(method: str = "predict", text: str = "hi") -> pb.PredictRequest:
    return pb.PredictRequest(method=method, args=[pb.Entry(key="text", value=pb.Value(str=text))])


def token(key=KEY, deployment_id: str = DEPLOYMENT, **kwargs) -> list[tuple[str, str]]:
    token = _tokens.sign(key, deployment_id=deployment_id, caller="local", **kwargs)
    return [(_wire.ROUTE_TOKEN_KEY, token)]


def hmac_token(key: bytes, **claims) -> list[tuple[str, str]]:
    """A token of the old kind (HMAC-SHA256 under ``key``), as one who holds the public key would make."""
    payload = _tokens._b64(json.dumps({"d": DEPLOYMENT, "c": "local", "e": time.time() + 60, **claims}).encode())
    return [(_wire.ROUTE_TOKEN_KEY, f"{payload}.{_tokens._b64(hmac.new(key, payload.encode(), 'sha256').digest())}")]


def refused(call, match: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert match in info.value.details() and "\n" not in info.value.details()


@pytest.mark.parametrize("metadata, reason", [
    (None, "no route token"),
    (token(key=_tokens.derive_key(os.urandom(32), b"")), "signature is invalid"),
    # What one who read the runner's (public) key could try: use it as a seed, or as an HMAC key.
    (token(key=_tokens.derive_key(PUBLIC, b"")), "signature is invalid"),
    (hmac_token(PUBLIC), "signature is invalid"),
    ([(_wire.ROUTE_TOKEN_KEY, "garbage")], "signature is invalid"),
    (token(deployment_id="other"), "for deployment 'other', not 'echo'"),
    (token(now=time.time() - 3600), "expired"),
    (token(ttl=10 * 365 * 86400), "beyond this runner's limit of 60 s"),
], ids=["missing", "forged", "seeded-with-public-key", "hmac-with-public-key", "garbage", "other-deployment",
        "expired", "ten-years"])
def test_bad_tokens_are_refused_with_the_reason(runner: runner_pb2_grpc.RunnerStub, metadata, reason: str) -> None:
    refused(lambda: runner.Predict(request(), metadata=metadata, timeout=10), reason)
    refused(lambda: list(runner.Generate(request("generate"), metadata=metadata, timeout=10)), reason)
    refused(lambda: list(runner.Stream(iter([pb.StreamRequest(start=pb.PredictRequest(method="stream"))]),
                                       metadata=metadata, timeout=10)), reason)


def test_a_good_token_is_accepted_for_every_call_shape(runner: runner_pb2_grpc.RunnerStub) -> None:
    good = token()
    assert runner.Predict(request(), metadata=good, timeout=10).output.str == "hi"
    assert runner.Predict(request(text="again"), metadata=good, timeout=10).output.str == "again"  # remembered
    replies = list(runner.Generate(request("generate"), metadata=good, timeout=10))
    assert [v.str for r in replies for v in r.items] == ["hi"]
    stream = [pb.StreamRequest(start=pb.PredictRequest(method="stream"), items=[pb.Value(str="a")])]
    replies = list(runner.Stream(iter(stream), metadata=good, timeout=10))
    assert [v.str for r in replies for v in r.items] == ["a"]


def test_a_remembered_token_still_expires(runner: runner_pb2_grpc.RunnerStub) -> None:
    short = token(ttl=1.0)
    assert runner.Predict(request(), metadata=short, timeout=10).output.str == "hi"
    time.sleep(1.2)
    refused(lambda: runner.Predict(request(), metadata=short, timeout=10), "expired")


def test_describe_and_health_need_no_token(runner: runner_pb2_grpc.RunnerStub, channel: grpc.Channel) -> None:
    assert {m.name for m in runner.Describe(pb.DescribeRequest(), timeout=10).methods} >= {"predict", "stream"}
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_model_cannot_read_the_key(runner: runner_pb2_grpc.RunnerStub) -> None:
    assert runner.Predict(request("secret"), metadata=token(), timeout=10).output.str == ""


def test_a_stopping_runner_refuses_new_calls_as_unavailable(tmp_path: Path) -> None:
    # UNAVAILABLE tells a client to resolve the route again and retry; the server
    # stops only after a moment of this, so calls do not meet it half stopped.
    with signed_runner(tmp_path) as (proc, channel):
        stub = runner_pb2_grpc.RunnerStub(channel)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as info:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # calls made before the signal is handled still pass
                stub.Predict(request(), metadata=token(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the runner is stopping" in info.value.details()
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("value, message", [
    ("abcd", "JUPYTER_DEPLOY_VERIFY_KEY is 2 bytes; an Ed25519 public key is 32"),
    ("not hex", "JUPYTER_DEPLOY_VERIFY_KEY is not a hex string"),
])
def test_a_bad_verification_key_stops_the_runner_with_the_reason(tmp_path: Path, value: str, message: str) -> None:
    model_dir = write_model(tmp_path, MODEL)
    done = subprocess.run([sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(model_dir)],
                          env={**os.environ, "JUPYTER_DEPLOY_VERIFY_KEY": value, "DEPLOYMENT_ID": DEPLOYMENT},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_only_a_reload_token_reloads_and_it_is_good_for_nothing_else(tmp_path: Path, start_runner) -> None:
    """Hot reload (issue 17): ``Reload`` takes a token with the claim ``"o": "reload"``, which only the
    control plane signs; a caller's route token (what a client gets) may not reload, and a reload
    token may not call the model."""
    with signed_runner(tmp_path / "served") as (_, channel):
        stub = runner_pb2_grpc.RunnerStub(channel)
        new = write_model(tmp_path / "new", MODEL.replace("return text\n", "return text.upper()\n", 1))
        reload = pb.ReloadRequest(model_path=str(new), version_id="v2")
        refused(lambda: stub.Reload(reload, timeout=10), "no route token")
        with pytest.raises(grpc.RpcError) as info:
            stub.Reload(reload, metadata=token(), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "good for calls into the model, not for reload" in info.value.details()
        assert stub.Predict(request(), metadata=token(), timeout=10).output.str == "hi"  # nothing swapped

        reload_token = token(op="reload")
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request(), metadata=reload_token, timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.Reload(reload, metadata=reload_token, timeout=10).changed == "predict() changed"
        assert stub.Predict(request(), metadata=token(), timeout=10).output.str == "HI"

        # More than method bodies: refused in the answer, and the code that serves stays.
        other = write_model(tmp_path / "other", MODEL.replace("import os\n", "import os\nimport json\n"))
        answer = stub.Reload(pb.ReloadRequest(model_path=str(other), version_id="v3"), metadata=reload_token,
                             timeout=10)
        assert answer.error.type == "NotSwappable" and "imports changed" in answer.error.message
        assert stub.Predict(request(), metadata=token(), timeout=10).output.str == "HI"

    # A runner without a verification key serves anyone on loopback, so it takes no reload at all.
    plain = start_runner(MODEL, name="plain")
    with grpc.insecure_channel(plain.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            runner_pb2_grpc.RunnerStub(channel).Reload(pb.ReloadRequest(model_path=str(tmp_path / "new")),
                                                       timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "no verification key" in info.value.details()
