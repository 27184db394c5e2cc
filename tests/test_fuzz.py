"""Fuzzing (issue 13): config files, call arguments and raw bytes to both gRPC services.

Every answer must be a clear error of the right kind, and the servers must stay up:

- config files: random YAML-ish text and random (or mutated valid) structures into
  ``config.parse_config`` / ``validate_config``, ``configs.validate`` of each config model and
  the daemon's own ``_configs.*_config``: ConfigError, a problem list or InvalidArgument, never
  another exception; and the same structures to a real daemon's ``Create``;
- call arguments: random Python values for a typed model's methods through the real Client
  against a real runner the daemon started: an answer, InputError (TypeError for a call Python
  itself would refuse), never another error; then raw ``PredictRequest``/``StreamRequest``
  messages with random values, decoded by the runner: OK or INVALID_ARGUMENT/NOT_FOUND;
- raw bytes (random, or a valid request with bytes changed) to every RPC of the ControlPlane
  service and of the Runner service (and the runner's health service), with and without
  credentials: a status with a message, never INTERNAL or UNKNOWN.

After each, the daemon answers GetInfo (the same pid) and the runner's health says SERVING.

Cases: ``JUPYTER_DEPLOY_FUZZ_EXAMPLES=N`` runs N per test, with a fresh random seed each run;
without it each test runs its CI default (a few thousand in all, the module under a minute on
two cores) derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import json
import math
import os
import random
import time

import grpc
import pytest
import yaml
from conftest import write_model
from daemon_helpers import daemon_pid, isolated_home
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jupyter_deploy import Client, InputError, _wire
from jupyter_deploy.config import parse_config, validate_config
from jupyter_deploy.errors import ConfigError
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.proto import runner_pb2 as pb

EXAMPLES = int(os.environ.get("JUPYTER_DEPLOY_FUZZ_EXAMPLES") or 0)

pytestmark = pytest.mark.timeout(300 + EXAMPLES // 10)


def fuzz(ci_examples: int):
    """Hypothesis settings: ``ci_examples`` derandomized, or JUPYTER_DEPLOY_FUZZ_EXAMPLES at random."""
    return settings(max_examples=EXAMPLES or ci_examples, deadline=None, derandomize=not EXAMPLES,
                    database=None, print_blob=True, suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------ values

KEYS = sorted({
    "model", "id", "user_id", "app_id", "model_type_id", "visibility", "description",
    "inference_compute_info", "cpu_limit", "cpu_memory", "num_accelerators", "accelerator_type",
    "accelerator_memory", "checkpoints", "type", "repo_id", "hf_token", "when", "concepts", "name",
    "worker", "model_version", "autoscale_config", "min_replicas", "max_replicas",
    "target_in_flight_per_replica", "scale_up_delay_seconds", "scale_down_delay_seconds",
    "scale_to_zero_delay_seconds", "default", "drain_seconds", "run_test", "resources", "secrets",
    "env_var", "inference_logger", "mode", "max_records", "max_age_seconds", "max_inline_bytes",
    "transformer", "enabled", "inference_batcher", "max_batch_size", "max_latency_ms", "timeout_ms",
    "python", "nodepools", "cloud_provider", "region", "instance_type", "cpus", "memory",
    "accelerators", "min_instances", "max_instances", "defaults", "users", "max_deployments",
    "upload_idle_seconds", "allowed_interpreters", "address",
})

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**80)
           | st.floats() | st.text(max_size=30) | st.sampled_from(["", "2", "500m", "13Gi", "1e308Ki",
                                                                   "-1", "nan", "inf", "local", "echo"]))
structures = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), inner, max_size=5),
    max_leaves=25)

VALID = {
    "ModelConfig": {
        "model": {"id": "m", "user_id": "local", "app_id": "default", "model_type_id": "text-to-text",
                  "visibility": "private"},
        "inference_compute_info": {"cpu_limit": "2", "cpu_memory": "1Gi", "num_accelerators": 1,
                                   "accelerator_type": ["NVIDIA-*"], "accelerator_memory": "15Gi"},
        "checkpoints": {"type": "huggingface", "repo_id": "a/b"},
        "concepts": [{"id": "pos", "name": "positive"}],
    },
    "DeploymentConfig": {
        "worker": {"model": {"id": "nosuchmodel", "user_id": "local", "app_id": "default",
                             "model_version": {"id": ""}}},
        "autoscale_config": {"min_replicas": 0, "max_replicas": 2, "target_in_flight_per_replica": 2,
                             "scale_up_delay_seconds": 1, "scale_down_delay_seconds": 30,
                             "scale_to_zero_delay_seconds": 60},
        "default": True, "drain_seconds": 5, "run_test": False, "resources": {"num_accelerators": 0},
        "secrets": [{"id": "token", "env_var": "TOKEN"}],
        "inference_logger": {"mode": "sampled", "max_records": 10},
        "transformer": {"enabled": False},
        "inference_batcher": {"enabled": True, "max_batch_size": 8, "max_latency_ms": 5, "timeout_ms": 100},
    },
    "ComputeClusterConfig": {"cloud_provider": "local", "region": "local", "description": "x"},
    "NodepoolConfig": {"instance_type": {"cpus": "2", "memory": "1Gi", "accelerators": 0},
                       "min_instances": 0, "max_instances": 1, "description": "x"},
    "LimitsConfig": {"defaults": {"max_deployments": 2, "max_replicas": 2}, "users": {"bob": {"max_replicas": 1}},
                     "upload_idle_seconds": 30, "allowed_interpreters": ["/opt/*/bin/python"]},
}


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _replace(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw, base: dict):
    """``base`` with one to three of its values (or whole sections) replaced by random structures."""
    value = base
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(value))
        value = _replace(value, draw(st.sampled_from(paths)), draw(structures))
    return value


def config_data(name: str):
    return mutated(VALID[name]) | structures


# ------------------------------------------------------------ 1. config files


yaml_text = st.one_of(
    st.text(max_size=200),
    structures.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    mutated(VALID["ModelConfig"]).map(lambda v: yaml.safe_dump(v, allow_unicode=True, sort_keys=False)),
    st.lists(st.sampled_from(["model:", "  id: ", "echo", "\n", "  ", "- ", "[", "]", "{", "}", ": ",
                              "&a ", "*a ", "!!python/object:os.system ", "!!binary ", "'", '"', "#",
                              "---\n", "...\n", "\t", "%YAML 1.1\n", "<<: ", "? ", "|\n", ">\n", "\x00"]),
             max_size=40).map("".join),
)


@fuzz(500)
@given(yaml_text)
def test_config_text_parses_or_fails_with_a_config_error(text):
    try:
        config = parse_config(text)
    except ConfigError as e:
        assert str(e).startswith("config.yaml")
    else:
        assert config.model.id


def _validators():
    from jupyter_deploy import configs
    from jupyter_deploy.control import _configs
    from jupyter_deploy.control._errors import InvalidArgument
    from jupyter_deploy.control._host_info import HostInfo

    host = HostInfo(cpus=2.0, memory=8 << 30)
    daemon = {"DeploymentConfig": lambda d: _configs.deployment_config(d, "local"),
              "ComputeClusterConfig": _configs.cluster_config,
              "NodepoolConfig": lambda d: _configs.nodepool_config(d, host)}
    context = {"DeploymentConfig": {"caller": "local"}, "NodepoolConfig": {"host": host}}
    return configs, daemon, context, InvalidArgument


@pytest.mark.parametrize("name", sorted(VALID))
def test_config_structures_validate_or_list_their_problems(name):
    configs, daemon, context, InvalidArgument = _validators()
    cls = getattr(configs, name)

    @fuzz(250)
    @given(config_data(name))
    def check(data):
        model, problems = configs.validate(cls, data, **context.get(name, {}))
        assert (model is None) == bool(problems)
        for path, message in problems:
            assert isinstance(path, str) and isinstance(message, str) and message
        if name == "ModelConfig":
            try:
                validate_config(data)
            except ConfigError as e:
                assert str(e).startswith("config.yaml")
        if name in daemon:
            if data is None:  # the daemon takes no config as an empty one
                problems = configs.validate(cls, {}, **context.get(name, {}))[1]
            try:
                stored = daemon[name](data)
            except InvalidArgument as e:
                assert e.message and problems
            else:
                assert not problems
                json.dumps(stored)  # what the daemon stores is JSON

    check()


# ------------------------------------------------------------ a daemon and a runner

TYPED = '''
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy
import pandas
from PIL import Image

from jupyter_deploy import ModelClass


@dataclass
class Point:
    x: float
    y: float
    label: str = ""


class Typed(ModelClass):
    @ModelClass.method
    def predict(self, text: str, n: int = 1, scale: float = 1.0, flags: list[bool] = [],
                counts: dict[str, int] = {}, note: Optional[str] = None, blob: bytes = b"",
                anything: dict = {}, point: Optional[Point] = None) -> str:
        return f"{len(text)}:{n}:{scale}:{len(flags)}:{len(counts)}:{note is None}:{len(blob)}:{point is None}"

    @ModelClass.method
    def arrays(self, a: Optional[numpy.ndarray] = None, img: Optional[Image.Image] = None,
               df: Optional[pandas.DataFrame] = None) -> list[int]:
        return [0 if a is None else int(a.size), 0 if img is None else img.width,
                0 if df is None else len(df)]

    @ModelClass.method
    def generate(self, text: str, n: int = 3) -> Iterator[str]:
        for i in range(max(0, min(n, 5))):
            yield text[:10] + str(i)

    @ModelClass.method
    def stream(self, items: Iterator[str], k: int = 1) -> Iterator[int]:
        for item in items:
            yield len(item)
'''


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A daemon with the typed model deployed; yields (client, bob's client, home)."""
    with isolated_home(tmp_path_factory, "fuzz") as home:
        client = Client()
        _, token = client.create_user("bob")
        bob = Client(pat=token)
        folder = write_model(tmp_path_factory.mktemp("typed"), TYPED, model_id="typed")
        client.upload_model(folder)
        client.model("typed").deploy("typed", run_test=False, timeout=180)
        try:
            yield client, bob, home
        finally:
            bob.close()
            client.close()


class Route:
    """The typed deployment's replica address and a route token (renewed before it expires)."""

    def __init__(self, client: Client):
        self.client, self._at, self._route = client, 0.0, None

    def get(self) -> cpb.Route:
        if time.monotonic() - self._at > 60:
            self._route = self.client.call("ResolveRoute", cpb.RouteRequest(deployment_id="typed"))
            self._at = time.monotonic()
        return self._route


def assert_up(client: Client, home, pid: int | None = None) -> None:
    info = client.call("GetInfo", cpb.InfoRequest())
    assert info.pid == (pid or daemon_pid(home))
    route = Route(client).get()
    with grpc.insecure_channel(route.address) as channel:
        from grpc_health.v1 import health_pb2_grpc

        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


# ------------------------------------------------------------ 2. call arguments

odd_values = st.one_of(
    st.builds(object), st.sets(st.integers(), max_size=3), st.complex_numbers(),
    st.just(float("nan")), st.just(float("inf")), st.just(2**64), st.just(-(2**63) - 1),
    st.just("x" * (1 << 20)), st.just(list(range(50_000))),
    st.integers(1, 400).map(lambda depth: _nest(depth)),
    st.just({1: "int key"}), st.just({"k": object()}), st.just(b"\xff" * 10),
)
py_values = st.recursive(scalars | st.binary(max_size=30) | odd_values,
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                             st.text(max_size=5), inner, max_size=4) | st.tuples(inner, inner),
                         max_leaves=15)


def _nest(depth: int):
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


PARAMS = {"predict": ["text", "n", "scale", "flags", "counts", "note", "blob", "anything", "point"],
          "arrays": ["a", "img", "df"], "generate": ["text", "n"]}


@fuzz(300)
@given(st.data())
def _call_arguments(platform, data):
    client, _, _ = platform
    model = client.model("typed")
    method = data.draw(st.sampled_from(sorted(PARAMS)))
    names = data.draw(st.lists(st.sampled_from(PARAMS[method] + ["bogus"]), unique=True, max_size=4))
    kwargs = {n: data.draw(py_values) for n in names}
    try:
        answer = getattr(model, method)(deployment_id="typed", **kwargs)
        if method == "generate":
            answer = list(answer)
    except InputError as e:
        assert str(e)
    except TypeError as e:  # what Python says of a call that does not fit the signature
        assert "argument" in str(e), repr(e)
    else:
        assert answer is not None


def test_random_call_arguments_get_answers_or_input_errors(platform):
    _call_arguments(platform)
    assert_up(platform[0], platform[2])


def _values(depth: int = 3):
    leaves = st.one_of(
        st.builds(pb.Value, none=st.just(True)), st.builds(pb.Value, str=st.text(max_size=20)),
        st.builds(pb.Value, bytes=st.binary(max_size=20)),
        st.builds(pb.Value, int=st.integers(-(2**63), 2**63 - 1)),
        st.builds(pb.Value, float=st.floats()), st.builds(pb.Value, bool=st.booleans()),
        st.builds(pb.Value, big_int=st.text(max_size=30) | st.integers().map(str)),
        st.builds(lambda d, s, b: pb.Value(ndarray=pb.NDArray(dtype=d, shape=s, data=b)),
                  st.sampled_from(["f4", "i8", "u1", "b1", "c16", "O", "<f8", "", "x"]) | st.text(max_size=4),
                  st.lists(st.integers(-3, 2**40), max_size=4), st.binary(max_size=64)),
        st.builds(lambda f, m, w, h, b, pm, p: pb.Value(image=pb.Image(
            format=f, mode=m, width=w, height=h, data=b, palette_mode=pm, palette=p)),
            st.sampled_from(["", "png", "jpeg", "raw", "PNG"]) | st.text(max_size=5),
            st.sampled_from(["", "RGB", "L", "P", "RGBA", "I;16", "1", "CMYK"]) | st.text(max_size=4),
            st.integers(-1, 70000), st.integers(-1, 70000), st.binary(max_size=64),
            st.sampled_from(["", "RGB"]), st.binary(max_size=12)),
        st.builds(lambda v: pb.Value(concept=v), st.builds(pb.Concept, id=st.text(max_size=5),
                                                           name=st.text(max_size=5), value=st.floats())),
        st.builds(lambda b, m: pb.Value(audio=pb.Media(data=b, mime=m)), st.binary(max_size=16),
                  st.text(max_size=10)),
    )

    def columns(inner):
        col = st.builds(lambda name, arr, strings: pb.Column(
            name=name, array=arr) if arr is not None else pb.Column(name=name, strings=strings),
            inner, st.none() | st.builds(pb.NDArray, dtype=st.sampled_from(["f8", "i8", "O", "M8[ns]"]),
                                         shape=st.lists(st.integers(-1, 5), max_size=2),
                                         data=st.binary(max_size=40)),
            st.builds(pb.Strings, values=st.lists(st.text(max_size=4), max_size=4),
                      missing=st.lists(st.booleans(), max_size=6), dtype=st.text(max_size=6)))
        return st.builds(lambda cs: pb.Value(dataframe=pb.DataFrame(columns=cs)), st.lists(col, max_size=3))

    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda items: pb.Value(list=pb.ListValue(items=items)), st.lists(inner, max_size=4)),
        st.builds(lambda es: pb.Value(map=pb.MapValue(entries=es)),
                  st.lists(st.builds(pb.Entry, key=st.text(max_size=6), value=inner), max_size=4)),
        st.builds(lambda es: pb.Value(fields=pb.MapValue(entries=es)),
                  st.lists(st.builds(pb.Entry, key=st.sampled_from(["x", "y", "label", "z"]), value=inner),
                           max_size=4)),
        columns(inner)), max_leaves=12)


wire_values = _values()
ALL_PARAMS = sorted({p for ps in PARAMS.values() for p in ps} | {"items", "k"})
requests = st.builds(
    lambda method, entries: pb.PredictRequest(method=method, args=entries),
    st.sampled_from(["predict", "arrays", "generate", "stream", "nosuch", ""]) | st.text(max_size=8),
    st.lists(st.builds(pb.Entry, key=st.sampled_from(ALL_PARAMS) | st.text(max_size=5), value=wire_values),
             max_size=5))

#: What a runner may answer a request it cannot serve.
RUNNER_REFUSALS = {"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED",
                   "FAILED_PRECONDITION"}


def _runner_stub(route: cpb.Route):
    channel = grpc.insecure_channel(route.address)
    metadata = [(_wire.ROUTE_TOKEN_KEY, route.token)]
    return channel, metadata


def _check_stream(responses) -> None:
    for response in responses:
        if response.HasField("error"):
            assert response.error.code in RUNNER_REFUSALS, response.error
            assert response.error.message


def _arrays(**values: pb.Value) -> pb.PredictRequest:
    return pb.PredictRequest(method="arrays", args=[pb.Entry(key=k, value=v) for k, v in values.items()])


@fuzz(300)
@given(requests, st.lists(wire_values, max_size=3))
# Found by hand, kept: a few bytes that asked PIL for a 30 GB image, and arrays that claim more
# than they carry.
@example(_arrays(img=pb.Value(image=pb.Image(format="raw", mode="RGB", width=100000, height=100000))), [])
@example(_arrays(img=pb.Value(image=pb.Image(format="raw", mode="nosuch", width=1, height=1, data=b"x"))), [])
@example(_arrays(a=pb.Value(ndarray=pb.NDArray(dtype="f4", shape=[2**40, 2**40]))), [])
@example(_arrays(df=pb.Value(dataframe=pb.DataFrame(columns=[pb.Column(
    array=pb.NDArray(dtype="M8[ns]", shape=[1], data=b"\0" * 8))]))), [])
def _wire_requests(route, request, items):
    from jupyter_deploy.proto import runner_pb2_grpc

    channel, metadata = _runner_stub(route.get())
    stub = runner_pb2_grpc.RunnerStub(channel)
    try:
        for call in ("Predict", "Generate", "Stream"):
            try:
                if call == "Predict":
                    stub.Predict(request, timeout=20, metadata=metadata)
                elif call == "Generate":
                    _check_stream(stub.Generate(request, timeout=20, metadata=metadata))
                else:
                    first = pb.StreamRequest(start=request, items=items[:1])
                    rest = [pb.StreamRequest(items=[v]) for v in items[1:]]
                    _check_stream(stub.Stream(iter([first, *rest]), timeout=20, metadata=metadata))
            except grpc.RpcError as e:
                assert e.code().name in RUNNER_REFUSALS, (call, e.code(), e.details(), request)
                assert e.details()
    finally:
        channel.close()


def test_random_wire_values_are_decoded_or_refused_by_the_runner(platform):
    client, _, home = platform
    _wire_requests(Route(client))
    assert_up(client, home)


# ------------------------------------------------------------ 3. raw bytes to every RPC

#: What a server may answer bytes it cannot use; INTERNAL and UNKNOWN are bugs.
CLEAR = {"OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND", "PERMISSION_DENIED", "FAILED_PRECONDITION",
         "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "OUT_OF_RANGE", "UNIMPLEMENTED"}


def _kind(method) -> str:
    return ("stream_" if method.client_streaming else "unary_") + ("stream" if method.server_streaming else "unary")


def raw_call(channel: grpc.Channel, path: str, kind: str, messages: list[bytes], metadata, timeout: float = 10):
    """Call ``path`` with ``messages`` as raw bytes; the status code's name (and its details)."""
    call = getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)
    request = iter(messages) if kind.startswith("stream_") else (messages[0] if messages else b"")
    try:
        if kind.endswith("_stream"):
            responses = call(request, timeout=timeout, metadata=metadata)
            for _ in responses:  # a first answer says the request was taken (a Watch streams on)
                responses.cancel()
                break
        else:
            call(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.CANCELLED:
            return "OK", ""
        return e.code().name, e.details() or ""
    return "OK", ""


@st.composite
def raw_messages(draw, message_type):
    """Random bytes, or a valid (random) message of ``message_type`` with some bytes changed."""
    def one() -> bytes:
        if draw(st.booleans()):
            return draw(st.binary(max_size=300))
        valid = message_type()
        for field in message_type.DESCRIPTOR.fields:
            if field.type == field.TYPE_STRING and draw(st.booleans()):
                value = draw(st.sampled_from(["local", "echo", "typed", "bob", "*", ""]) | st.text(max_size=12))
                try:
                    setattr(valid, field.name, value)
                except AttributeError:  # a repeated field
                    getattr(valid, field.name).append(value)
        data = bytearray(valid.SerializeToString() + draw(st.binary(max_size=20)))
        for _ in range(draw(st.integers(0, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return [one() for _ in range(draw(st.integers(1, 3)))]


CONTROL = cpb.DESCRIPTOR.services_by_name["ControlPlane"]


@pytest.fixture(scope="module")
def control_channel(platform):
    client, _, _ = platform
    with grpc.insecure_channel(client.address) as channel:
        yield channel


def _credentials(client: Client, bob: Client):
    return {"admin": client._metadata, "bob": bob._metadata, "none": [],
            "forged": [(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + "jdp_" + "x" * 40)]}


def test_raw_bytes_to_every_control_plane_rpc_get_clear_answers(platform, control_channel):
    client, bob, home = platform
    pid = daemon_pid(home)
    credentials = _credentials(client, bob)
    methods = [m for m in CONTROL.methods]
    seen: dict[str, set[str]] = {}

    @fuzz(1200)
    @given(st.sampled_from(methods), st.sampled_from(sorted(credentials)), st.data())
    def check(method, who, data):
        if method.name == "Shutdown" and who == "admin":
            who = "bob"  # a valid ShutdownRequest from the admin would stop the daemon: that is no bug
        messages = data.draw(raw_messages(getattr(cpb, method.input_type.name)))
        code, details = raw_call(control_channel, f"/{CONTROL.full_name}/{method.name}", _kind(method),
                                 messages, credentials[who])
        seen.setdefault(method.name, set()).add(code)
        assert code in CLEAR, (method.name, who, code, details, messages)
        assert code == "OK" or details, (method.name, code)

    check()
    assert client.call("GetInfo", cpb.InfoRequest()).pid == pid
    print({name: sorted(codes) for name, codes in sorted(seen.items())})
    assert_up(client, home, pid)


RUNNER_METHODS = [(m.name, _kind(m), getattr(pb, m.input_type.name))
                  for m in pb.DESCRIPTOR.services_by_name["Runner"].methods]
HEALTH = [("Check", "unary_unary", health_pb2.HealthCheckRequest),
          ("Watch", "unary_stream", health_pb2.HealthCheckRequest)]


def test_raw_bytes_to_every_runner_rpc_get_clear_answers(platform):
    client, _, home = platform
    route = Route(client)

    @fuzz(600)
    @given(st.sampled_from([("jupyter_deploy.v1.Runner", *m) for m in RUNNER_METHODS]
                           + [("grpc.health.v1.Health", *m) for m in HEALTH]),
           st.sampled_from(["token", "none", "forged"]), st.data())
    def check(target, who, data):
        service, name, kind, message_type = target
        messages = data.draw(raw_messages(message_type))
        current = route.get()
        metadata = {"token": [(_wire.ROUTE_TOKEN_KEY, current.token)], "none": [],
                    "forged": [(_wire.ROUTE_TOKEN_KEY, current.token[:-4] + "AAAA")]}[who]
        if current.address not in channels:
            channels[current.address] = grpc.insecure_channel(current.address)
        code, details = raw_call(channels[current.address], f"/{service}/{name}", kind, messages, metadata)
        assert code in CLEAR, (service, name, who, code, details, messages)
        assert code == "OK" or details, (name, code)

    channels: dict[str, grpc.Channel] = {}
    try:
        check()
    finally:
        for channel in channels.values():
            channel.close()
    assert_up(client, home)


# ------------------------------------------------------------ configs through the daemon


def test_random_configs_to_create_get_clear_answers(platform):
    client, bob, home = platform
    pid = daemon_pid(home)
    kinds = {"compute_cluster": "ComputeClusterConfig", "nodepool": "NodepoolConfig",
             "deployment": "DeploymentConfig"}

    @fuzz(300)
    @given(st.sampled_from(sorted(kinds)), st.data())
    def check(kind, data):
        config = data.draw(config_data(kinds[kind]))
        try:
            text = json.dumps(config, allow_nan=True)
        except (TypeError, ValueError):
            text = json.dumps(str(config))
        rid = f"f{random.getrandbits(32):x}"
        ref = cpb.ResourceRef(kind=kind, id=rid, compute_cluster_id="local" if kind != "compute_cluster" else "",
                              nodepool_id="local" if kind == "deployment" else "")
        try:
            client.call("Create", cpb.CreateRequest(ref=ref, config_json=text), timeout=20)
        except Exception as e:  # noqa: BLE001 - judged below
            code = getattr(e, "code", "")
            assert code in CLEAR, (kind, code, str(e), config)
            assert str(e)
        else:
            client.call("Delete", cpb.DeleteRequest(refs=[ref]))

    check()
    assert client.call("GetInfo", cpb.InfoRequest()).pid == pid


def test_nan_and_huge_numbers_in_json_configs_are_refused_clearly(platform):
    client, _, _ = platform
    for text in ('{"description": NaN}', '{"region": 1e999}', '{"description": "' + "x" * 100 + '"}',
                 "[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000):
        ref = cpb.ResourceRef(kind="compute_cluster", id=f"n{random.getrandbits(24):x}")
        try:
            client.call("Create", cpb.CreateRequest(ref=ref, config_json=text))
        except Exception as e:  # noqa: BLE001 - judged below
            assert getattr(e, "code", "") in CLEAR, (text[:40], e)
        else:
            client.call("Delete", cpb.DeleteRequest(refs=[ref]))
    assert math.isfinite(client.call("GetInfo", cpb.InfoRequest()).pid)
