"""What an upload claims is not taken on trust (issue 13, item 10): forged UploadModel headers,
sent as raw gRPC request streams the Python client would never build, against a real daemon.

- the config stored is the archive's config.yaml, whatever the header says;
- method descriptions of a bad form are refused; well-formed ones naming methods the model lacks
  are replaced by what the version's first replica serves;
- an interpreter path must be absolute and, for users other than the admin, one the admin allowed
  (the daemon's own, its model environments, ``allowed_interpreters`` in limits.yaml); a
  deployment's ``python:`` likewise.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import write_model
from daemon_helpers import isolated_home, wait_for, wait_for_state

from jupyter_deploy import Client, ControlPlaneError
from jupyter_deploy.client._upload import describe_folder, pack_folder
from jupyter_deploy.config import load_config
from jupyter_deploy.proto import control_pb2 as cpb
from jupyter_deploy.proto import runner_pb2 as pb

pytestmark = pytest.mark.timeout(180)

MODEL = '''
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    """Echoes."""

    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo: " + text
'''


@pytest.fixture(scope="module")
def env_root(tmp_path_factory) -> Path:
    """A folder of "conda environments" the admin allows: envs/*/bin/python."""
    root = tmp_path_factory.mktemp("conda")
    for name in ("torch", "other"):
        (root / "envs" / name / "bin").mkdir(parents=True)
        (root / "envs" / name / "bin" / "python").symlink_to(sys.executable)
    (root / "envs" / "torch" / "bin" / "not-python").write_text("#!/bin/sh\n")  # not allowed by name
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory, env_root):
    with isolated_home(tmp_path_factory, "security_upload") as home:
        (home / "limits.yaml").write_text(f"allowed_interpreters:\n  - {env_root}/envs/*/bin/python\n")
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Client:
    return Client()


@pytest.fixture(scope="module")
def bob(admin) -> Client:
    _, token = admin.create_user("bob")
    return Client(pat=token)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = write_model(tmp_path_factory.mktemp("echo"), MODEL, model_id="echo")
    (root / "config.yaml").write_text("model:\n  id: echo\n  visibility: private\n")
    return root


def forged(folder: Path, model_id: str = "echo", *, description: pb.ModelDescription | None = None,
           config_json: str = "", python: str = sys.executable) -> list[cpb.UploadChunk]:
    """An UploadModel request stream for ``folder`` whose header says what the arguments say."""
    data = pack_folder(folder)
    if description is None:
        description = describe_folder(folder)[0]
    header = cpb.UploadHeader(model=cpb.ModelRef(model_id=model_id), sha256=hashlib.sha256(data).hexdigest(),
                              size=len(data), description=description, config_json=config_json, python=python)
    return [cpb.UploadChunk(header=header), cpb.UploadChunk(data=data)]


def upload(client: Client, chunks: list[cpb.UploadChunk]) -> cpb.ModelVersion:
    return client.call("UploadModel", iter(chunks))


def refused(client: Client, chunks: list[cpb.UploadChunk], match: str) -> str:
    with pytest.raises(ControlPlaneError, match=match) as e:
        upload(client, chunks)
    assert e.value.code == "INVALID_ARGUMENT"
    return str(e.value)


def stored(client: Client, version_id: str) -> cpb.ModelVersion:
    return client.call("GetVersion", cpb.VersionRef(version_id=version_id))


# ------------------------------------------------------------ config.yaml


def test_the_archives_config_is_stored_whatever_the_header_says(admin, folder):
    lie = {"model": {"id": "echo", "visibility": "public"},
           "inference_compute_info": {"num_accelerators": 8, "cpu_memory": 1 << 40}}
    version = upload(admin, forged(folder, "cfg-lie", config_json=json.dumps(lie)))
    truth = load_config(folder).to_dict()
    assert json.loads(stored(admin, version.id).config_json) == truth
    assert json.loads(version.config_json)["model"]["visibility"] == "private"
    assert json.loads(version.config_json)["inference_compute_info"]["num_accelerators"] == 0
    assert admin.call("GetModel", cpb.GetModelRequest(model=cpb.ModelRef(model_id="cfg-lie"))).visibility == "private"

    # No config in the header at all (or one that is not JSON): the archive's, all the same.
    for config_json in ("", "not json {"):
        version = upload(admin, forged(folder, "cfg-none", config_json=config_json))
        assert json.loads(version.config_json) == truth


def test_an_archive_whose_config_is_invalid_is_refused_whatever_the_header_says(admin, tmp_path):
    bad = write_model(tmp_path, MODEL, model_id="echo")
    (bad / "config.yaml").write_text("model:\n  id: not an id\n")
    header_config = json.dumps({"model": {"id": "echo"}})
    message = refused(admin, forged(bad, "cfg-bad", config_json=header_config, description=pb.ModelDescription()),
                      match="the archive's config.yaml is not valid")
    assert "model.id" in message
    (bad / "config.yaml").write_bytes(b"model:\n  id: \xff\xfe\n")
    refused(admin, forged(bad, "cfg-bad", description=pb.ModelDescription()), match="not UTF-8")
    with pytest.raises(ControlPlaneError, match="not found"):
        admin.call("GetModel", cpb.GetModelRequest(model=cpb.ModelRef(model_id="cfg-bad")))


# ------------------------------------------------------------ method descriptions


def _method(name: str, *params: pb.Parameter, shape: str = "unary", kind: str = "str") -> pb.MethodDescription:
    return pb.MethodDescription(name=name, shape=shape, parameters=list(params), returns=pb.Type(kind=kind))


def test_descriptions_clients_could_not_use_are_refused(admin, folder):
    text = pb.Parameter(name="text", type=pb.Type(kind="str"))
    cases = {
        "not a Python identifier": _method("drop table"),
        "unknown shape": _method("predict", text, shape="sideways"),
        "unknown type kind": _method("predict", pb.Parameter(name="x", type=pb.Type(kind="pickle"))),
        "takes 1 argument": _method("predict", pb.Parameter(name="x", type=pb.Type(kind="list"))),
        "routing keyword": _method("predict", pb.Parameter(name="deployment_id", type=pb.Type(kind="str"))),
        "named twice": _method("predict", text, text),
        "Iterator parameter": _method("predict", pb.Parameter(name="xs", type=pb.Type(kind="str"), stream=True)),
        "default does not decode": _method("predict", pb.Parameter(
            name="n", type=pb.Type(kind="int"), has_default=True, default=pb.Value(str="three"))),
        "nest more than": _method("predict", pb.Parameter(name="x", type=_nested(40))),
        "described twice": None,
    }
    for problem, method in cases.items():
        methods = [_method("predict", text)] * 2 if method is None else [method]
        refused(admin, forged(folder, "desc-bad", description=pb.ModelDescription(methods=methods)), match=problem)
    huge = pb.ModelDescription(methods=[pb.MethodDescription(name="predict", shape="unary", doc="x" * (2 << 20),
                                                             returns=pb.Type(kind="str"))])
    refused(admin, forged(folder, "desc-bad", description=huge), match="more than")


def _nested(depth: int) -> pb.Type:
    t = pb.Type(kind="str")
    for _ in range(depth):
        t = pb.Type(kind="list", args=[t])
    return t


def test_methods_the_model_lacks_are_replaced_by_what_its_replica_serves(admin, folder):
    real = describe_folder(folder)[0]
    lie = pb.ModelDescription(model_id="someone-else", class_name="Echo", methods=[
        *real.methods, _method("steal", pb.Parameter(name="path", type=pb.Type(kind="str")))])
    version = upload(admin, forged(folder, "desc-lie", description=lie))
    # Shown until a replica serves it (the model's id is the archive config's, not the header's) ...
    assert [m.name for m in version.description.methods] == ["predict", "steal"]
    assert version.description.model_id == "echo"
    deployment = admin.model("desc-lie").deploy("desclie", timeout=120)
    try:
        # ... then what the replica describes is what the daemon keeps.
        wait_for(lambda: [m.name for m in stored(admin, version.id).description.methods] == ["predict"], 30,
                 "the replica's description to replace the uploader's")
        kept = stored(admin, version.id).description
        assert list(kept.methods) == list(real.methods)
        assert admin.model("desc-lie").predict("hi", deployment_id="desclie") == "echo: hi"
    finally:
        deployment.delete()


# ------------------------------------------------------------ interpreters


def test_a_relative_interpreter_is_refused_even_from_the_admin(admin, bob, folder):
    for client in (admin, bob):
        message = refused(client, forged(folder, "py-relative", python="python3"), match="not an absolute path")
        assert "'python3'" in message
    refused(bob, forged(folder, "py-relative", python="../../bin/sh"), match="not an absolute path")


def test_an_interpreter_the_admin_did_not_allow_is_refused(bob, folder, env_root):
    for path in ("/bin/sh", f"{env_root}/envs/torch/bin/not-python",
                 f"{env_root}/envs/torch/../../../../../../bin/sh",    # normalized before matching
                 f"{env_root}/envs/a/b/bin/python"):                    # * is one path segment
        message = refused(bob, forged(folder, "py-forbidden", python=path), match="is not allowed on this daemon")
        assert path in message and "allowed_interpreters in limits.yaml" in message
    with pytest.raises(ControlPlaneError, match="not found"):
        bob.call("GetModel", cpb.GetModelRequest(model=cpb.ModelRef(model_id="py-forbidden")))


def test_allowed_interpreters_are_stored(admin, bob, folder, env_root):
    allowed = f"{env_root}/envs/torch/bin/python"
    assert upload(bob, forged(folder, "py-ok", python=allowed)).python == allowed
    assert upload(bob, forged(folder, "py-own", python=sys.executable)).python == os.path.normpath(sys.executable)
    assert upload(bob, forged(folder, "py-none", python="")).python == ""  # the daemon's own
    # Allowed by its name but no interpreter there: refused now, not when a replica starts.
    refused(bob, forged(folder, "py-gone", python=f"{env_root}/envs/gone/bin/python"),
            match="not an executable file")
    # The admin's choice is the admin's: taken as named (normalized).
    assert upload(admin, forged(folder, "py-admin", python="/opt//x/../y/bin/python")).python == "/opt/y/bin/python"


def test_a_deployments_python_is_checked_the_same_way(admin, bob, folder, env_root):
    bob.upload_model(folder, model_id="py-deploy")
    bob.call("Create", cpb.CreateRequest(ref=cpb.ResourceRef(kind="compute_cluster", id="c"), config_json="{}"))
    bob.call("Create", cpb.CreateRequest(ref=cpb.ResourceRef(kind="nodepool", compute_cluster_id="c", id="p"),
                                         config_json="{}"))
    ref = cpb.ResourceRef(kind="deployment", compute_cluster_id="c", nodepool_id="p", id="d")

    def config(python: str) -> str:
        return json.dumps({"worker": {"model": {"id": "py-deploy"}}, "python": python, "run_test": False})

    for python, match in (("/bin/sh", "deployment config python /bin/sh is not allowed"),
                          ("sh", "deployment config python 'sh' is not an absolute path")):
        with pytest.raises(ControlPlaneError, match=match) as e:
            bob.call("Create", cpb.CreateRequest(ref=ref, config_json=config(python)))
        assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ControlPlaneError, match="not found"):
        bob.call("Get", cpb.ResourceRef(kind="deployment", id="d"))

    allowed = f"{env_root}/envs/other/bin/python"
    created = bob.call("Create", cpb.CreateRequest(ref=ref, config_json=config(allowed)))
    assert json.loads(created.config_json)["python"] == allowed
    try:
        with pytest.raises(ControlPlaneError, match="/bin/sh is not allowed"):
            bob.call("Update", cpb.UpdateRequest(ref=ref, config_json=json.dumps({"python": "/bin/sh"})))
        assert json.loads(bob.call("Get", cpb.ResourceRef(kind="deployment", id="d")).config_json)["python"] == allowed
        wait_for_state(bob, "d", "RUNNING", 120)
    finally:
        bob.call("Delete", cpb.DeleteRequest(refs=[cpb.ResourceRef(kind="deployment", id="d")]))

    # The admin may name any interpreter, but it must be one on this host.
    admin.upload_model(folder, model_id="py-deploy")
    with pytest.raises(ControlPlaneError, match="/gone/bin/python is not an executable file"):
        admin.call("Create", cpb.CreateRequest(ref=cpb.ResourceRef(
            kind="deployment", compute_cluster_id="local", nodepool_id="local", id="d"),
            config_json=json.dumps({"worker": {"model": {"id": "py-deploy"}}, "python": "/gone/bin/python"})))
