"""Secrets: set, list and delete them, give them to runners, and leak them nowhere (a real daemon)."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_helpers import isolated_home
from test_platform import write_model

from jupyter_deploy import Client, ControlPlaneError, Nodepool, NotFoundError

pytestmark = pytest.mark.timeout(180)

SECRET_MODEL = '''
import os
from jupyter_deploy import ModelClass


class Secretive(ModelClass):
    @ModelClass.method
    def predict(self, name: str) -> str:
        return os.environ.get(name) or ""
'''

#: The value under test: distinctive, so finding it anywhere means it leaked.
VALUE = "sv-" + secrets.token_hex(20)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, 'secrets_home') as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    return Client()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``jupyter-deploy ARGS`` in a fresh process, against the module's daemon."""
    return subprocess.run([sys.executable, "-m", "jupyter_deploy", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env=os.environ.copy(), check=False)


def secret_file(home: Path, name: str, user: str = "local") -> Path:
    return home / "secrets" / user / name


def test_set_list_delete(client, home):
    client.set_secret("alpha", "first")
    client.set_secret("alpha", "second")  # replaced
    client.set_secret("beta.2", "other")
    assert client.list_secrets() == ["alpha", "beta.2"]
    path = secret_file(home, "alpha")
    assert path.read_text() == "second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "secrets").stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left

    client.delete_secret("alpha")
    assert client.list_secrets() == ["beta.2"]
    assert not path.exists()
    with pytest.raises(NotFoundError, match="secret alpha not found"):
        client.delete_secret("alpha")
    client.delete_secret("beta.2")
    assert client.list_secrets() == []


@pytest.mark.parametrize("name", ["bad/name", "", "..", ".hidden", "a b", "x" * 129, "ключ"])
def test_bad_secret_names_are_refused(client, name):
    with pytest.raises(ControlPlaneError, match="bad secret name") as info:
        client.set_secret(name, "value-" + VALUE)
    assert info.value.code == "INVALID_ARGUMENT"
    assert VALUE not in str(info.value)


def test_empty_value_is_refused(client):
    with pytest.raises(ControlPlaneError, match="secret gamma: the value is empty"):
        client.set_secret("gamma", "")


def test_bad_secret_configs_are_refused(client, tmp_path):
    client.upload_model(write_model(tmp_path / "m", "badcfg"))
    nodepool = Nodepool("local", compute_cluster_id="local", client=client)
    cases = [
        ([{"id": "api_key", "env_var": "api-key"}], "secrets[0].env_var: bad environment variable name 'api-key'"),
        ([{"id": "api_key", "env_var": "1KEY"}], "bad environment variable name '1KEY'"),
        ([{"id": "bad/name", "env_var": "API_KEY"}], "secrets[0].id: bad secret name 'bad/name'"),
        ([{"env_var": "API_KEY"}], "secrets[0].id: required"),
        ([{"id": "a", "env_var": "A"}, {"id": "b", "env_var": "A"}], "environment variable A is given twice"),
        ([{"id": "a", "env_var": "A"}, {"id": "a", "env_var": "B"}], "secret a is listed twice"),
        ([{"id": "a", "env_var": "MODEL_PATH"}], "MODEL_PATH is set by jupyter_deploy itself"),
        ([{"id": "a", "env_var": "A", "value": "x"}], "secrets[0].value: unknown field"),
        ({"id": "a"}, "expected a list"),
    ]
    for config, message in cases:
        with pytest.raises(ControlPlaneError, match=re.escape(message)) as info:
            nodepool.create_deployment("badcfg", worker={"model": {"id": "badcfg"}}, secrets=config)
        assert info.value.code == "INVALID_ARGUMENT"
    assert [d.id for d in client.list_deployments()] == []


def test_a_secret_reaches_the_runner_and_leaks_nowhere(client, home, tmp_path):
    write_model(tmp_path / "secretive", "secretive")
    (tmp_path / "secretive" / "1" / "model.py").write_text(SECRET_MODEL)
    client.upload_model(tmp_path / "secretive")
    nodepool = Nodepool("local", compute_cluster_id="local", client=client)

    # Named but not set: no replica starts, and the reason says which secret and how to set it.
    deployment = nodepool.create_deployment("secretive", worker={"model": {"id": "secretive"}},
                                            secrets=[{"id": "api_key", "env_var": "API_KEY"}])
    deadline = time.monotonic() + 30
    while "api_key" not in deployment.status["reason"]:
        assert time.monotonic() < deadline, deployment.status
        time.sleep(0.1)
    status = deployment.status
    assert status["state"] in ("STARTING", "FAILED")
    assert status["reason"].startswith("secret api_key not found; set it with client.set_secret('api_key'")
    time.sleep(1.5)  # several retries' worth: still nothing started
    assert all(r.get("pid") in (None, 0) for r in deployment.status["replicas"])
    assert not any("starting" in line for line in deployment.logs())

    # Set: the waiting deployment comes up by itself, with the value in its environment.
    client.set_secret("api_key", VALUE)
    deployment.wait_until_ready(120)
    assert deployment.status["reason"] == ""
    model = client.model("secretive")
    assert model.predict("API_KEY") == VALUE

    # Nowhere else: listings, config, status, logs, CLI output, any file of the daemon's.
    assert client.list_secrets() == ["api_key"]
    assert VALUE not in json.dumps([s.to_dict() for s in client.list_deployments()])
    config_and_status = json.dumps({"config": deployment.config, "status": deployment.status})
    assert '"env_var": "API_KEY"' in config_and_status and VALUE not in config_and_status
    assert VALUE not in "\n".join(deployment.logs(10_000))
    outputs = {args: cli(*args) for args in (("secret", "list"), ("deployment", "get", "secretive"),
                                             ("deployment", "list"), ("logs", "secretive"))}
    for args, out in outputs.items():
        assert out.returncode == 0, (args, out.stderr)
        assert VALUE not in out.stdout + out.stderr, args
    assert outputs[("secret", "list")].stdout.split() == ["api_key"]

    own = secret_file(home, "api_key")
    assert own.read_text() == VALUE and stat.S_IMODE(own.stat().st_mode) == 0o600
    searched = []
    for root, _, files in os.walk(home):
        for name in files:
            path = Path(root) / name
            if path == own or not path.is_file():
                continue
            searched.append(path.relative_to(home).as_posix())
            assert VALUE.encode() not in path.read_bytes(), f"the secret's value is in {path}"
    assert "state.db" in searched and any(p.startswith("logs/") for p in searched)


def test_cli_set_list_delete(client):
    out = cli("secret", "set", "from_stdin", stdin=VALUE + "-cli\n")
    assert out.returncode == 0, out.stderr
    assert VALUE not in out.stdout + out.stderr
    assert client.list_secrets() == ["api_key", "from_stdin"]
    out = cli("secret", "set", "from_flag", "--value", "flag-value")
    assert out.returncode == 0, out.stderr
    out = cli("secret", "list")
    assert out.stdout.split() == ["api_key", "from_flag", "from_stdin"]
    assert VALUE not in out.stdout
    assert cli("secret", "delete", "from_stdin").returncode == 0
    assert cli("secret", "delete", "from_flag").returncode == 0
    out = cli("secret", "delete", "from_flag")
    assert out.returncode != 0 and "secret from_flag not found" in out.stderr
    out = cli("secret", "set", "bad/name", "--value", VALUE)
    assert out.returncode != 0 and "bad secret name" in out.stderr
    assert VALUE not in out.stdout + out.stderr
