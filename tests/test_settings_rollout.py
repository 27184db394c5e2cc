"""Changing the settings replicas start with rolls out like a new version (real daemon and runners)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import write_model
from daemon_helpers import isolated_home, wait_for, wait_for_state

from jupyter_deploy import Client, DeploymentError, Nodepool
from jupyter_deploy.control._configs import replica_spec

pytestmark = pytest.mark.timeout(240)

MODEL = '''
import os
from jupyter_deploy import ModelClass


class Words(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return f"<{text}>"

    @ModelClass.method
    def pid(self) -> int:
        return os.getpid()
'''

TRANSFORMER = '''
from jupyter_deploy import Transformer


class Upper(Transformer):
    def preprocess(self, method, inputs):
        if isinstance(inputs.get("text"), str):
            inputs["text"] = inputs["text"].upper()
        return inputs

    def postprocess(self, method, output):
        return f"[{output}]" if isinstance(output, str) else output
'''

BROKEN_TRANSFORMER = '''
from jupyter_deploy import Transformer


class Broken(Transformer):
    def load(self):
        raise RuntimeError("the transformer cannot load")
'''


def model_folder(root, model_id: str, transformer: str | None):
    folder = write_model(root / model_id, MODEL, model_id)
    if transformer is not None:
        (folder / "1" / "transformer.py").write_text(transformer)
    return folder


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with isolated_home(tmp_path_factory, "settings_rollout_home"):
        yield Client()


def replica_ids(deployment) -> list[tuple[str, int]]:
    return [(r["id"], r["pid"]) for r in deployment.status["replicas"]]


def config(deployment) -> dict:
    return json.loads(deployment.refresh().resource.config_json)


def test_a_transformer_change_rolls_out_without_failed_calls(client, tmp_path) -> None:
    client.upload_model(model_folder(tmp_path, "words", TRANSFORMER))
    deployment = Nodepool("local", client=client).create_deployment(
        "words", worker={"model": {"id": "words"}}, drain_seconds=1)
    deployment.wait_until_ready(120)
    model = client.model("words")
    assert model.predict("abc") == "[<ABC>]"
    before = replica_ids(deployment)
    old_pid = model.pid()

    failures: list[BaseException] = []
    answers: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and len(answers) < 20000 and time.monotonic() < deadline:
            try:
                answers.append(model.predict("abc"))
            except BaseException as e:  # noqa: BLE001 - any failure fails the test
                failures.append(e)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: len(answers) >= 5, 30, "calls before the update")
        deployment.update(transformer={"enabled": False})
        assert deployment.state == "UPDATING"  # at once: wait_until_ready() must not see the old RUNNING
        deployment.wait_until_ready(120)
        wait_for(lambda: answers[-5:] == ["<abc>"] * 5, 60, "the replica without the transformer to answer")
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures[:3]
    assert answers[0] == "[<ABC>]" and answers[-1] == "<abc>"
    assert set(answers) == {"[<ABC>]", "<abc>"}
    # Ready means the new replica serves and the old one takes no new call; it may still drain.
    after = wait_for(lambda: replica_ids(deployment) if len(replica_ids(deployment)) == 1 else None, 30,
                     "the old replica to drain away")
    assert after[0][0] not in {rid for rid, _ in before}
    assert model.pid() != old_pid
    assert deployment.status["replicas"][0]["spec"] == deployment.status["spec"]
    wait_for_state(client, "words", "RUNNING", 30)  # the rollout ends once the old replica is gone


def test_live_settings_do_not_replace_the_replica(client, tmp_path) -> None:
    client.upload_model(model_folder(tmp_path, "quiet", TRANSFORMER))
    deployment = Nodepool("local", client=client).create_deployment("quiet", worker={"model": {"id": "quiet"}})
    deployment.wait_until_ready(120)
    model = client.model("quiet")
    before, pid = replica_ids(deployment), model.pid()

    deployment.update(inference_logger={"mode": "all"})
    assert deployment.state == "RUNNING"
    deployment.update(autoscale_config={"max_replicas": 2, "scale_down_delay_seconds": 30}, drain_seconds=2)
    assert deployment.state == "RUNNING"
    deployment.update(transformer={"enabled": True})  # what it already runs (the default): nothing to roll
    assert deployment.state == "RUNNING"
    time.sleep(1.5)  # several scheduler passes
    deployment.wait_until_ready(60)
    assert replica_ids(deployment) == before
    assert model.pid() == pid
    assert model.predict("hi") == "[<HI>]"
    assert config(deployment)["inference_logger"]["mode"] == "all"
    # ... and the logger's new mode reached the running replica.
    def logged() -> bool:
        df = deployment.inference_logs()
        return len(df) > 0 and "hi" in json.dumps(df["inputs"].tolist(), default=str).lower()

    wait_for(logged, 20, "the call's inputs in the inference log")
    assert replica_ids(deployment) == before


def test_settings_that_cannot_come_up_are_rolled_back(client, tmp_path) -> None:
    client.upload_model(model_folder(tmp_path, "fragile", BROKEN_TRANSFORMER))
    deployment = Nodepool("local", client=client).create_deployment(
        "fragile", worker={"model": {"id": "fragile"}}, transformer={"enabled": False})
    deployment.wait_until_ready(120)
    model = client.model("fragile")
    before = replica_ids(deployment)
    deployment.update(transformer={"enabled": True})
    with pytest.raises(DeploymentError, match="rolled back") as e:
        deployment.wait_until_ready(120)
    assert "previous settings" in e.value.reason
    assert "the transformer cannot load" in e.value.reason + "\n".join(e.value.log_tail)
    assert model.predict("x") == "<x>"  # the old replica never stopped serving
    assert replica_ids(deployment) == before
    assert deployment.state == "RUNNING"
    # Back to the settings the old replica runs: no new rollout starts.
    assert config(deployment)["transformer"] == {"enabled": False}
    status = deployment.status
    assert status["spec"] == status["replicas"][0]["spec"] == replica_spec(status["version_id"], config(deployment))
