"""Who may call each control-plane RPC, against a real daemon: the admin-only ones refuse others,
and every RPC answers a non-admin's minimal request with a status the rules allow."""

from __future__ import annotations

import grpc
import pytest
from daemon_helpers import daemon_pid, isolated_home

from jupyter_deploy import Client, ControlPlaneError, _wire
from jupyter_deploy.control._access import RPC_RULES
from jupyter_deploy.proto import control_pb2 as cpb

pytestmark = pytest.mark.timeout(120)

SERVICE = cpb.DESCRIPTOR.services_by_name["ControlPlane"]
#: What a non-admin's minimal request to an RPC the rules allow may answer: an answer, or an
#: objection about the (missing or empty) resource it names.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.FAILED_PRECONDITION}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "hardening_access") as home:
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Client:
    return Client()


@pytest.fixture(scope="module")
def bob(admin) -> tuple[Client, str]:
    _, token = admin.create_user("bob")
    return Client(pat=token), token


def test_a_non_admin_shutdown_is_refused_and_the_daemon_keeps_serving(home, admin, bob):
    client, _ = bob
    pid = daemon_pid(home)
    for stop_runners in (True, False):
        with pytest.raises(ControlPlaneError, match=r"only the admin \(local\) can stop the daemon") as e:
            client.call("Shutdown", cpb.ShutdownRequest(stop_runners=stop_runners))
        assert e.value.code == "PERMISSION_DENIED"
    assert client.call("GetInfo", cpb.InfoRequest()).pid == pid == daemon_pid(home)
    assert admin.call("GetInfo", cpb.InfoRequest()).pid == pid


def _call(channel: grpc.Channel, method, token: str) -> grpc.StatusCode:
    """Call ``method`` with its empty request as the holder of ``token``; the status it ends with."""
    request_type = getattr(cpb, method.input_type.name)
    output_type = getattr(cpb, method.output_type.name)
    path = f"/{SERVICE.full_name}/{method.name}"
    kind = ("stream_" if method.client_streaming else "unary_") + \
        ("stream" if method.server_streaming else "unary")
    call = getattr(channel, kind)(path, request_serializer=request_type.SerializeToString,
                                  response_deserializer=output_type.FromString)
    request = iter([request_type()]) if method.client_streaming else request_type()
    metadata = [(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)]
    try:
        if method.server_streaming:
            responses = call(request, timeout=10, metadata=metadata)
            next(responses, None)  # the first answer (Watch then streams on: not waited for)
            responses.cancel()
        else:
            call(request, timeout=10, metadata=metadata)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            return e.code()
    return grpc.StatusCode.OK


def test_every_rpc_answers_a_non_admin_as_its_rule_says(home, bob):
    assert set(SERVICE.methods_by_name) == set(RPC_RULES)
    _, token = bob
    with grpc.insecure_channel(Client().address) as channel:
        answers = {m.name: _call(channel, m, token) for m in SERVICE.methods}
    wrong = {}
    for rpc, code in answers.items():
        expected = {grpc.StatusCode.PERMISSION_DENIED} if RPC_RULES[rpc].admin_only else ALLOWED
        if code not in expected:
            wrong[rpc] = code.name
    assert not wrong, f"unexpected answers to a non-admin: {wrong}"
    assert Client(pat=token).call("GetInfo", cpb.InfoRequest()).user_id == "bob"  # still serving
