"""What a model's code can reach (issue 13, item 3), and how fast a revoked token stops calls.

A non-admin user's model, deployed next to another user's deployment that has a secret,
tries to read what it must not: the daemon's token file, secret and state, other users'
secrets, models and telemetry, the daemon's and the other runner's ``/proc/<pid>/environ``;
and a route token it could make with the key it sees. Real daemon, real runners. Where the
daemon runs as root (CI does), each owner's runners run as an OS user of their own
(``control._sandbox``); elsewhere the checks that need that are skipped.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from daemon_helpers import alive, daemon_pid, isolated_home, wait_for, wait_for_state
from test_platform import write_model

from jupyter_deploy import Client, ControlPlaneError, Deployment, RunnerError, _tokens, _wire
from jupyter_deploy.control._auth import server_secret
from jupyter_deploy.control._backends.base import ReplicaSpec
from jupyter_deploy.control._backends.local import runner_environment
from jupyter_deploy.control._home import sandboxed
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.proto import runner_pb2 as pb
from jupyter_deploy.proto import runner_pb2_grpc

pytestmark = pytest.mark.timeout(240)

#: Distinctive values: finding one where it must not be is a leak.
ALICE_VALUE = "alice-" + secrets.token_hex(16)
BOB_VALUE = "bob-" + secrets.token_hex(16)
CANARY = "canary-" + secrets.token_hex(16)

SNOOP = '''
import os
from jupyter_deploy import ModelClass


class Snoop(ModelClass):
    @ModelClass.method
    def probe(self, paths: str) -> dict:
        """What reading each path (a folder: listing it) gave."""
        out = {}
        for path in paths.splitlines():
            try:
                if os.path.isdir(path):
                    out[path] = "read: " + ",".join(sorted(os.listdir(path)))
                else:
                    with open(path, "rb") as f:
                        out[path] = "read: " + f.read(4096).decode("utf-8", "replace")
            except OSError as e:
                out[path] = "denied: " + type(e).__name__
        return out

    @ModelClass.method
    def whoami(self) -> dict:
        try:  # (a non-dumpable process's /proc files are root's: it may not read its own either)
            with open("/proc/self/environ", "rb") as f:
                environ = f.read().decode("utf-8", "replace")
        except OSError as e:
            environ = "denied: " + type(e).__name__
        return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "pid": os.getpid(),
                "env": dict(os.environ), "environ": environ}
'''

VAULT = '''
import os
from jupyter_deploy import ModelClass


class Vault(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "vault: " + text + (" (has its key)" if os.environ.get("BOB_KEY") else "")
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    # CANARY stands for whatever the daemon's environment holds that no model may see.
    with isolated_home(tmp_path_factory, "isolation", JD_TEST_CANARY=CANARY) as home:
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Client:
    return Client()


def _deploy(client: Client, folder: Path, source: str, model_id: str, secret: tuple[str, str, str]) -> Deployment:
    name, value, env_var = secret
    client.set_secret(name, value)
    write_model(folder, model_id)
    (folder / "1" / "model.py").write_text(source)
    client.upload_model(folder)
    deployment = client.compute_cluster("local").nodepool("local").create_deployment(
        model_id, worker={"model": {"id": model_id}}, secrets=[{"id": name, "env_var": env_var}])
    deployment.wait_until_ready(120)
    return deployment


@pytest.fixture(scope="module")
def bob(admin, tmp_path_factory) -> tuple[Client, Deployment]:
    """The other user: a deployment with a secret in its environment."""
    _, token = admin.create_user("bob")
    client = Client(pat=token)
    return client, _deploy(client, tmp_path_factory.mktemp("vault"), VAULT, "vault", ("bob_key", BOB_VALUE, "BOB_KEY"))


@pytest.fixture(scope="module")
def alice(admin, bob, tmp_path_factory) -> tuple[Client, Deployment]:
    """A non-admin user whose model snoops."""
    _, token = admin.create_user("alice")
    client = Client(pat=token)
    return client, _deploy(client, tmp_path_factory.mktemp("snoop"), SNOOP, "snoop",
                           ("alice_key", ALICE_VALUE, "ALICE_KEY"))


def _replica(deployment: Deployment) -> dict:
    [replica] = [r for r in deployment.status["replicas"] if r["state"] == "READY"]
    return replica


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_the_vault_serves_with_its_secret(bob):
    client, _ = bob
    assert client.model("vault").predict("hi") == "vault: hi (has its key)"


def test_a_model_reads_nothing_of_the_daemon_or_of_other_users(home, alice, bob):
    alice_client, _ = alice
    _, vault = bob
    replica = _replica(vault)
    version = vault.status["version_id"]
    paths = [
        home / "local.token", home / "secret.key", home / "state.db", home / "daemon.json", home,
        home / "secrets", home / "secrets" / "bob" / "bob_key", home / "secrets" / "alice" / "alice_key",
        home / "versions", home / "versions" / version / "1" / "model.py", home / "blobs",
        home / "logs" / "bob" / "vault.log", home / "telemetry" / "bob" / "vault" / replica["id"],
        Path(f"/proc/{daemon_pid(home)}/environ"), Path(f"/proc/{replica['pid']}/environ"),
    ]
    if sandboxed():  # bob's copy of his model, in his sandbox
        bob_uid = _uid_of(replica["pid"])
        paths += [home / "sandboxes" / str(bob_uid) / "versions" / version / "1" / "model.py",
                  home / "sandboxes" / str(bob_uid) / "home"]
    missing = [p for p in paths if not p.exists()]
    assert not missing, missing  # (else "denied" could just mean "not there")
    got = alice_client.model("snoop").probe("\n".join(map(str, paths)))
    assert set(got) == {str(p) for p in paths}
    leaked = {path: result for path, result in got.items() if result != "denied: PermissionError"}
    assert not leaked, leaked


def test_a_model_sees_its_own_secret_and_none_of_the_daemons_environment(alice):
    alice_client, _ = alice
    me = alice_client.model("snoop").whoami()
    env, environ = me["env"], me["environ"]
    assert env["ALICE_KEY"] == ALICE_VALUE
    for text in (json.dumps(env), environ):
        assert BOB_VALUE not in text and CANARY not in text
        for name in ("JUPYTER_DEPLOY_HOME", "JUPYTER_DEPLOY_PAT", "JUPYTER_DEPLOY_ADDRESS", "JD_TEST_CANARY",
                     "JUPYTER_DEPLOY_SIGNING_KEY"):
            assert name + "=" not in text.replace("\0", "\n") and name not in env, name
    # The runner's own variables (its verification key, a public key anyway, was taken out of os.environ).
    assert {"MODEL_PATH", "DEPLOYMENT_ID", "JUPYTER_DEPLOY_TELEMETRY", "PATH", "HOME"} <= set(env)
    assert "JUPYTER_DEPLOY_VERIFY_KEY" not in env
    # The runner is non-dumpable: its /proc files are root's, so only the daemon (root) reads them.
    assert environ == "denied: PermissionError" or "JUPYTER_DEPLOY_VERIFY_KEY=" in environ


def _salt(home: Path, user_id: str, deployment_id: str) -> str:
    with sqlite3.connect(home / "state.db") as db:
        return db.execute("SELECT signing_key FROM deployments WHERE user_id = ? AND id = ?",
                          (user_id, deployment_id)).fetchone()[0]


def test_a_token_made_with_what_a_model_sees_is_refused(home, alice, bob):
    _, vault = bob
    real = _tokens.RouteKeys(server_secret(home))  # only the daemon (and root) can derive these
    # All the key material alice's runner holds: its verification key (not even in its environment now).
    seen = real.public(_salt(home, "alice", "snoop"))
    ten_years = 10 * 365 * 86400.0
    claims = {"d": "vault", "c": "alice", "e": time.time() + ten_years}
    payload = _tokens._b64(json.dumps(claims, separators=(",", ":")).encode())
    forged = {
        "hmac with the seen key": f"{payload}.{_tokens._b64(hmac.new(seen, payload.encode(), 'sha256').digest())}",
        "ed25519 seeded with the seen key": _tokens.sign(_tokens.derive_key(seen, b""), deployment_id="vault",
                                                         caller="alice", ttl=ten_years),
    }
    # Even the deployment's real key gets no 10-year token past the runner.
    salt = _salt(home, "bob", "vault")
    forged["the real key, 10 years"] = real.sign(salt, deployment_id="vault", caller="alice", ttl=ten_years)
    request = pb.PredictRequest(method="predict", args=[pb.Entry(key="text", value=pb.Value(str="x"))])
    with grpc.insecure_channel(_replica(vault)["address"]) as channel:
        stub = runner_pb2_grpc.RunnerStub(channel)
        for what, token in forged.items():
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(request, metadata=[(_wire.ROUTE_TOKEN_KEY, token)], timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, what
        assert "beyond this runner's limit of 60 s" in e.value.details()
        good = real.sign(salt, deployment_id="vault", caller="bob", ttl=10)  # as the daemon signs
        assert stub.Predict(request, metadata=[(_wire.ROUTE_TOKEN_KEY, good)], timeout=10).output.str.startswith(
            "vault: x")
    # The store keeps no key: the route key comes from the daemon's secret and the row's salt.
    assert real.public(salt).hex() != salt


@pytest.mark.skipif(not sandboxed(), reason="runners get OS users of their own only where the daemon is root")
def test_each_owner_runs_as_an_os_user_of_its_own(home, alice, bob):
    alice_client, snoop = alice
    _, vault = bob
    me = alice_client.model("snoop").whoami()
    daemon_uid = _uid_of(daemon_pid(home))
    bob_uid = _uid_of(_replica(vault)["pid"])
    assert me["uid"] == _uid_of(_replica(snoop)["pid"]) == me["gid"]
    assert len({me["uid"], daemon_uid, bob_uid}) == 3 and daemon_uid == 0
    assert 0 not in me["groups"]
    # Its model folder is its own copy, in its sandbox, readable by it alone.
    model_path = Path(me["env"]["MODEL_PATH"])
    assert model_path.is_relative_to(home / "sandboxes" / str(me["uid"]))
    st = (model_path / "1" / "model.py").stat()
    assert st.st_uid == me["uid"] and st.st_mode & 0o077 == 0


def test_a_revoked_token_stops_calls_through_an_existing_handle_within_15_s(alice):
    alice_client, _ = alice
    token_id, token = alice_client.create_token()
    other = Client(pat=token)
    model = other.model("snoop")
    assert model.whoami()["uid"] >= 0  # the route is resolved and cached
    # A holder who kept the route itself, and calls the runner directly.
    route = other.call("ResolveRoute", cpb.RouteRequest(model=cpb.ModelRef(user_id="alice", app_id="default",
                                                                           model_id="snoop")))
    request = pb.PredictRequest(method="whoami")
    metadata = [(_wire.ROUTE_TOKEN_KEY, route.token)]
    alice_client.revoke_token(token_id)
    deadline = time.monotonic() + 15
    failure = refused = None
    with grpc.insecure_channel(route.address) as channel:
        runner = runner_pb2_grpc.RunnerStub(channel)
        while (failure is None or refused is None) and time.monotonic() < deadline:
            if failure is None:
                try:
                    model.whoami()
                except (ControlPlaneError, RunnerError) as e:
                    failure = e
            if refused is None:
                try:
                    runner.Predict(request, metadata=metadata, timeout=10)
                except grpc.RpcError as e:
                    refused = e
            time.sleep(0.2)
    assert failure is not None, "calls through the revoked token's handle still worked after 15 s"
    assert failure.code == "UNAUTHENTICATED" and "token revoked" in str(failure), failure
    assert refused is not None, "the revoked token's route token still worked after 15 s"
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in refused.details()
    assert alice_client.model("snoop").whoami()["env"]["ALICE_KEY"] == ALICE_VALUE  # her other token still works
    other.close()


def test_a_runner_environment_holds_only_what_it_needs(tmp_path):
    """The environment the local backend builds: the spec's variables, and of the daemon's only
    those a process needs to run (``INHERITED``)."""
    spec = ReplicaSpec(replica_id="0" * 12, user_id="alice", deployment_id="d", version_id="v",
                       model_path=tmp_path, python="python", args=(), env={"MODEL_PATH": "/m", "API_KEY": "own"},
                       gpus=(), resources=None, log=None)
    daemon = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_HOME": "/cuda", "HF_HOME": "/hf",
              "HOME": "/root", "JUPYTER_DEPLOY_HOME": "/h", "JUPYTER_DEPLOY_PAT": "jdp_x", "AWS_SECRET_ACCESS_KEY": "s",
              "JUPYTER_DEPLOY_ROUTE_TOKEN_TTL": "3", "SSH_AUTH_SOCK": "/tmp/agent"}
    env = runner_environment(spec, daemon)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_HOME": "/cuda", "HF_HOME": "/hf",
                   "HOME": "/root", "MODEL_PATH": "/m", "API_KEY": "own", "PYTHONUNBUFFERED": "1"}


@pytest.mark.skipif(not sandboxed(), reason="runners get OS users of their own only where the daemon is root")
def test_a_restarted_daemon_adopts_sandboxed_runners_and_can_stop_them(home, alice):
    """A daemon killed (-9) leaves its runners serving; the next one finds them by their port
    files in the owners' sandboxes, and its signals reach them."""
    alice_client, snoop = alice
    pid = _replica(snoop)["pid"]
    old = daemon_pid(home)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not alive(old), 10, "the daemon to die")
    Client()  # a new daemon over the same home
    assert alice_client.model("snoop").whoami()["pid"] == pid  # the same runner: adopted, not restarted
    snoop.stop()
    wait_for_state(alice_client, "snoop", "STOPPED", 60)
    wait_for(lambda: not alive(pid), 30, "the adopted runner to stop")
