"""Two users on one daemon: each sees and changes only their own, and public models are shared."""

from __future__ import annotations

import time

import grpc
import pytest
from daemon_helpers import isolated_home
from test_platform import write_model

from jupyter_deploy import Client, ControlPlaneError, Deployment, Model, NotFoundError, _wire
from jupyter_deploy.client import _api
from jupyter_deploy.proto import runner_pb2, runner_pb2_grpc

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, 'home', JUPYTER_DEPLOY_ROUTE_TOKEN_TTL='3') as home:  # route tokens live 3 s
        yield home


@pytest.fixture(scope="module")
def admin(home):
    return Client()


@pytest.fixture(scope="module")
def alice(admin, tmp_path_factory):
    """alice, with a private and a public model, each deployed on her own nodepool."""
    _, token = admin.create_user("alice")
    alice = Client(pat=token)
    root = tmp_path_factory.mktemp("alice")
    alice.upload_model(write_model(root / "private", "secretm"))
    public = write_model(root / "public", "pubm")
    (public / "config.yaml").write_text("model:\n  id: pubm\n  visibility: public\n")
    alice.upload_model(public)
    nodepool = alice.create_compute_cluster("mine").create_nodepool("pool")
    for model_id in ("secretm", "pubm"):
        nodepool.create_deployment(model_id, worker={"model": {"id": model_id}}).wait_until_ready(90)
    return alice


@pytest.fixture(scope="module")
def bob(admin, alice):
    _, token = admin.create_user("bob")
    return Client(pat=token)


def test_each_client_is_its_user(alice, bob, admin):
    assert (admin.user_id, alice.user_id, bob.user_id) == ("local", "alice", "bob")


def test_bob_sees_only_alices_public_model(alice, bob):
    assert [m.id for m in bob.list_models(user_id="alice")] == ["pubm"]
    with pytest.raises(NotFoundError):
        Model(model_id="secretm", user_id="alice", client=bob)
    assert Model(model_id="secretm", user_id="alice", client=alice).predict("x") == "v1:x"


def test_bob_cannot_touch_alices_private_model(alice, bob, tmp_path):
    ref = {"model_id": "secretm", "user_id": "alice"}
    with pytest.raises(NotFoundError):
        bob.call("ListVersions", _api.cpb.GetModelRequest(model=_api.cpb.ModelRef(**ref)))
    with pytest.raises(NotFoundError):
        bob.call("DeleteModel", _api.cpb.DeleteModelRequest(model=_api.cpb.ModelRef(**ref), force=True))
    with pytest.raises(ControlPlaneError) as e:  # deploying it on his own nodepool: he cannot see it
        bob.compute_cluster("local").nodepool("local").create_deployment(
            "stolen", worker={"model": {"id": "secretm", "user_id": "alice"}})
    assert e.value.code == "NOT_FOUND"
    with pytest.raises(ControlPlaneError) as e:  # calling through her deployment
        bob.call("ResolveRoute", _api.cpb.RouteRequest(deployment_id="secretm", user_id="alice"))
    assert e.value.code == "NOT_FOUND"
    assert Model(model_id="secretm", user_id="alice", client=alice).predict("still") == "v1:still"


def test_bob_cannot_change_alices_public_model(alice, bob):
    model = Model(model_id="pubm", user_id="alice", client=bob)
    with pytest.raises(ControlPlaneError) as e:
        model.delete(force=True)
    assert e.value.code == "PERMISSION_DENIED"
    with pytest.raises(ControlPlaneError) as e:
        model.set_visibility("private")
    assert e.value.code == "PERMISSION_DENIED"


def test_bob_cannot_see_or_change_alices_compute(alice, bob):
    for call in (lambda: Deployment("pubm", user_id="alice", client=bob).state,
                 lambda: Deployment("pubm", user_id="alice", client=bob).stop(),
                 lambda: Deployment("pubm", user_id="alice", client=bob).update(default=True),
                 lambda: Deployment("pubm", user_id="alice", client=bob).delete(),
                 lambda: Deployment("pubm", user_id="alice", client=bob).logs(),
                 lambda: bob.compute_cluster("mine").list_nodepools(),
                 lambda: _api.ComputeCluster("mine", user_id="alice", client=bob).list_nodepools()):
        with pytest.raises(ControlPlaneError) as e:
            call()
        assert e.value.code in ("NOT_FOUND", "PERMISSION_DENIED")
    assert [d.id for d in bob.list_deployments()] == []
    assert Deployment("pubm", client=alice).state == "RUNNING"


def test_bob_deploys_alices_public_model_on_his_own_nodepool(alice, bob):
    model = Model(model_id="pubm", user_id="alice", client=bob)
    with pytest.raises(ControlPlaneError, match="has no deployment"):
        model.predict("x")  # her deployment is hers: no free ride on her compute
    deployment = bob.compute_cluster("local").nodepool("local").create_deployment(
        "bobspub", worker={"model": {"id": "pubm", "user_id": "alice"}})
    deployment.wait_until_ready(90)
    assert model.predict("hi") == "v1:hi"
    assert model.version.model_id == "pubm"
    deployment.delete()


def test_a_platform_model_is_served_by_the_shared_nodepool_on_demand(admin, bob, tmp_path):
    admin.upload_model(write_model(tmp_path / "shared", "greeter"), user_id="platform")
    model = Model("platform/default/models/greeter", client=bob)
    assert model.predict("bob") == "v1:bob"  # nobody deployed it: a replica started on demand
    with pytest.raises(ControlPlaneError) as e:  # only the admin installs platform models
        bob.upload_model(write_model(tmp_path / "mine", "greeter2"), user_id="platform")
    assert e.value.code == "PERMISSION_DENIED"


def test_route_tokens_are_renewed_before_they_expire(alice):
    model = Model(model_id="secretm", user_id="alice", client=alice)
    assert model.predict("a") == "v1:a"
    time.sleep(3.5)  # longer than a token lives here: the client must have renewed it
    assert model.predict("b") == "v1:b"

    route = alice.call("ResolveRoute", _api.cpb.RouteRequest(deployment_id="secretm"))
    time.sleep(3.5)
    stub = runner_pb2_grpc.RunnerStub(alice.runner_channel(route.address))
    with pytest.raises(grpc.RpcError) as e:  # the lapsed token itself is refused by the runner
        stub.Predict(runner_pb2.PredictRequest(method="predict"), timeout=10,
                     metadata=((_wire.ROUTE_TOKEN_KEY, route.token),))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in e.value.details()


class _LateClock:
    """The ``time`` module as a client whose clock is a minute behind the daemon's sees it."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return time.time() - 60


def test_a_client_whose_clock_is_behind_gets_a_new_token_when_a_runner_refuses_its_own(alice, monkeypatch):
    """Such a client takes its tokens for fresh a minute too long; a runner refuses one once it
    lapsed, before the call reaches the model, and the call is made again with a new one."""
    monkeypatch.setattr(_api, "time", _LateClock())
    model = Model(model_id="secretm", user_id="alice", client=alice)
    deadline = time.monotonic() + 4.5  # past a token's life here (3 s)
    answers = 0
    while time.monotonic() < deadline:
        assert model.predict("late") == "v1:late"
        answers += 1
        time.sleep(0.1)
    assert answers > 20
