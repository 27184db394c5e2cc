"""The one deploy path (Client.deploy, Model.deploy, `jupyter-deploy deploy`) and the Watch
stream it waits on, against a real daemon and real runners."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_for, write_model
from daemon_helpers import isolated_home

from jupyter_deploy import Client, ControlPlaneError, DeploymentError, Model
from jupyter_deploy.client import _watch
from jupyter_deploy.control._events import MAX_WATCHERS

pytestmark = pytest.mark.timeout(300)

SOURCE = '''
from jupyter_deploy import ModelClass


class Greeter(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "{greeting} " + text
'''

BROKEN = '''
from jupyter_deploy import ModelClass


class Broken(ModelClass):
    def load_model(self):
        raise RuntimeError("the weights are missing")

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


def folder(root, model_id: str, greeting: str = "hello"):
    return write_model(root, SOURCE.format(greeting=greeting), model_id)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "deploy_home") as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    client = Client()
    yield client
    client.close()


def test_deploy_a_folder_then_redeploy_unchanged_and_changed(client, tmp_path):
    root = folder(tmp_path / "greet", "greet-er")
    seen = []
    dep = client.deploy(root, progress=lambda r: seen.append((r.action, r.readiness)))
    assert dep.id == "greet-er"  # the model's id, never renamed
    assert dep.rollout.action == "create" and dep.rollout.version.number == 1
    assert dep.rollout.readiness.done and dep.rollout.readiness.ready == 1
    assert seen[0] == ("upload", None)  # the upload's progress first
    assert [s for s in seen if s[0] != "upload"][0] == ("create", None) and seen[-1][1].done
    assert "greet-er v1: deployment greet-er RUNNING on local/local, 1 replica" in dep.rollout.summary()
    model = Model(model_id="greet-er", client=client)
    assert model.predict("you") == "hello you"

    again = client.deploy(root)
    assert again.rollout.version.deduplicated and again.rollout.action == "keep"

    folder(root, "greet-er", greeting="hi")
    # A model.py in a folder: the folder's config. (hot=False: new replicas, though only predict()'s
    # body changed, which would otherwise be swapped in: tests/test_hot_reload.py.)
    changed = client.deploy(root / "1" / "model.py", hot=False)
    assert changed.rollout.action == "roll out" and changed.rollout.version.number == 2
    # Ready means no replica of the old version takes new calls.
    assert Model(model_id="greet-er", client=client).predict("you") == "hi you"
    assert all(r["version_id"] == changed.status["version_id"] for r in changed.status["replicas"]
               if r["state"] == "READY")


def test_deploy_source_text_and_a_stopped_deployment_restarts(client):
    with pytest.raises(ValueError, match="give model_id"):
        client.deploy(SOURCE.format(greeting="yo"))
    dep = client.deploy(SOURCE.format(greeting="yo"), "texty", autoscale_config={"min_replicas": 1})
    assert Model(model_id="texty", client=client).predict("a") == "yo a"
    dep.stop()
    again = client.deploy(SOURCE.format(greeting="yo"), "texty")
    assert again.rollout.action == "restart" and again.state == "RUNNING"


def test_a_lone_model_py_with_a_config_beside_it(client, tmp_path):
    (tmp_path / "model.py").write_text(SOURCE.format(greeting="lone"))
    (tmp_path / "config.yaml").write_text("model:\n  id: lone\n")
    dep = client.deploy(tmp_path / "model.py", deployment_id="loneone")
    assert dep.id == "loneone" and Model(model_id="lone", client=client).predict("x") == "lone x"


def test_a_folder_whose_config_names_another_app_deploys_from_that_app(client, tmp_path):
    root = folder(tmp_path / "inapp", "inapp", greeting="app")
    (root / "config.yaml").write_text("model:\n  id: inapp\n  app_id: other\n")
    dep = client.deploy(root)
    assert dep.status["model"] == f"{client.user_id}/other/models/inapp"
    assert Model(model_id="inapp", app_id="other", client=client).predict("x") == "app x"


def test_a_deleted_deployments_logs_go_with_it(client, tmp_path):
    root = folder(tmp_path / "relog", "relog", greeting="first")
    first = client.deploy(root)
    [old] = [r["id"] for r in first.status["replicas"]]
    assert any(old in line for line in first.logs(200))
    first.delete()
    second = client.deploy(folder(root, "relog", greeting="second"))
    [new] = [r["id"] for r in second.status["replicas"]]
    lines = second.logs(200)
    assert any(new in line for line in lines)
    assert not any(old in line for line in lines), lines  # not the earlier deployment's replicas


def test_a_card_follows_its_deployments_pushed_state_and_shows_its_deletion(client, tmp_path):
    from jupyter_deploy.notebook.widgets import DeploymentCard

    client.deploy(folder(tmp_path / "card", "carded"))
    card = DeploymentCard(client.deployment("carded"))
    assert card.following and card.state == "RUNNING"
    other = Client()  # another kernel, the CLI or the sidebar changes it
    try:
        other.deployment("carded").stop()
        wait_for(lambda: card.state == "STOPPED", 30, "the card to show STOPPED")
        other.deployment("carded").start()
        wait_for(lambda: card.state == "RUNNING" and "1/1" in card.details_html.value, 30,
                 "the card to show RUNNING with its replica")
        other.deployment("carded").delete()
        wait_for(lambda: card.state == "DELETED", 30, "the card to show the deletion")
    finally:
        other.close()
    assert card.delete_button.disabled and "was deleted" in card.message_html.value
    assert "DELETED" in card.title_html.value


SLOW = '''
import time

from jupyter_deploy import ModelClass


class Slow(ModelClass):
    def load_model(self):
        time.sleep(2.5)

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text

    def test(self):
        time.sleep(1.5)
'''


def test_progress_tells_the_upload_and_each_replicas_step_as_it_goes(client, tmp_path):
    root = write_model(tmp_path / "slow", SLOW, "slow")
    (root / "weights.bin").write_bytes(b"w" * (3 << 20))  # a few chunks
    seen: list = []
    client.deploy(root, progress=lambda r: seen.append((r.action, r.uploaded, r.readiness, r.describe())))
    uploads = [u for action, u, _, _ in seen if action == "upload"]
    assert len(uploads) >= 3 and uploads[-1][0] == uploads[-1][1] > 3 << 20
    assert [u[0] for u in uploads] == sorted(u[0] for u in uploads)
    assert "uploading" in next(text for action, _, _, text in seen if action == "upload")
    steps = {step: seconds for _, _, r, _ in seen if r is not None for _, step, seconds in r.steps}
    assert "load_model" in steps and "test" in steps, steps
    lines = [text for _, _, r, text in seen if r is not None and r.steps]
    assert any("load_model() for" in line for line in lines) and any("test() for" in line for line in lines)
    # Ticks while nothing is pushed: the time so far grows within one step.
    load = [seconds for _, _, r, _ in seen if r is not None for _, step, seconds in r.steps if step == "load_model"]
    assert max(load) >= 1.0 and len(load) >= 2


def test_model_deploy_pins_an_uploaded_version(client, tmp_path):
    root = folder(tmp_path / "pinned", "pinned", greeting="one")
    first = client.upload_model(root)
    client.upload_model(folder(root, "pinned", greeting="two"))
    model = Model(model_id="pinned", client=client)
    dep = model.deploy(version_id=first.id)
    assert dep.id == "pinned" and dep.status["version_id"] == first.id
    assert model.predict("x") == "one x"
    pinned_by_config = client.deploy(root, worker={"model": {"model_version": {"id": first.id}}})
    assert pinned_by_config.status["version_id"] == first.id  # a pin the config names holds
    follow = model.deploy()  # unpinned again: the latest serves (swapped in: only predict()'s body differs)
    assert follow.rollout.action == "hot reload" and model.predict("x") == "two x"


def test_an_existing_deployment_is_never_moved(client, tmp_path):
    root = folder(tmp_path / "stay", "stay")
    client.deploy(root)
    client.compute_cluster("local").create_nodepool("other")
    with pytest.raises(DeploymentError, match="already exists on local/local"):
        client.deploy(root, nodepool_id="other")


FAILING_TEST = '''
from jupyter_deploy import ModelClass


class FailingTest(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return text

    def test(self):
        self.helper(3)

    def helper(self, n):
        raise TypeError(f"expected str, got int {n}")
'''


def test_a_failing_model_fails_the_deploy_at_once_with_its_own_exception(client, tmp_path):
    with pytest.raises(DeploymentError) as info:
        client.deploy(write_model(tmp_path / "b", BROKEN, "broken"), timeout=120)
    e = info.value
    assert e.failed_step == "load_model" and e.state == "FAILED"
    assert (e.model_error.type, e.model_error.message) == ("RuntimeError", "the weights are missing")
    assert "load_model() failed: RuntimeError: the weights are missing" in str(e)
    assert e.log_tail == [] and "crashed" not in str(e)  # the exception itself, never a log guess

    with pytest.raises(DeploymentError) as info:
        client.deploy(write_model(tmp_path / "t", FAILING_TEST, "failingtest"), timeout=120)
    e = info.value
    assert e.failed_step == "test" and e.model_error.type == "TypeError"
    frames = e.model_error.remote_traceback
    assert 'File "1/model.py", line 11, in test' in frames and 'line 14, in helper' in frames
    assert frames.rstrip().endswith("TypeError: expected str, got int 3")
    status = client.deployment("failingtest").status
    assert status["state"] == "FAILED" and all(r["restarts"] == 0 for r in status["replicas"])


def test_cli_deploy(client, home, tmp_path):
    root = folder(tmp_path / "cli", "clim", greeting="cli")
    out = subprocess.run([sys.executable, "-m", "jupyter_deploy", "deploy", str(root), "--min-replicas", "1"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "clim v1: create deployment clim on local/local" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("clim v1: deployment clim RUNNING on local/local")
    assert Model(model_id="clim", client=client).predict("x") == "cli x"
    bad = subprocess.run([sys.executable, "-m", "jupyter_deploy", "deploy", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "nope" in bad.stderr


# ---------------------------------------------------------------- Watch


def test_watch_sends_the_current_state_then_changes(client, tmp_path):
    dep = client.deploy(folder(tmp_path / "watched", "watched"))
    events = client.watch(ids=["watched"], timeout=60)
    initial = []
    for event in events:
        if event.kind == "synced":
            break
        initial.append(event)
    assert {e.kind for e in initial} == {"deployment", "replica", "route"} and all(e.initial for e in initial)
    assert next(e for e in initial if e.kind == "deployment").state == "RUNNING"
    route = next(e for e in initial if e.kind == "route")
    assert route.state == "SERVING" and len(route.addresses) == 1

    threading.Thread(target=dep.stop, daemon=True).start()
    changes = []
    for event in events:
        changes.append(event)
        if event.kind == "deployment" and event.state == "STOPPED":
            break
    events.close()
    assert not any(e.initial for e in changes)
    assert [e.seq for e in changes] == sorted(e.seq for e in changes)
    assert any(e.kind == "route" and e.state == "NOT_SERVING" for e in changes)
    assert any(e.kind == "replica" and e.state in ("STOPPING", "DELETED") for e in changes)


def test_watch_filters_and_refusals(client, home):
    kinds = {e.kind for e in client.watch(["route"], timeout=5) if e.kind != "synced"}
    assert kinds <= {"route"}
    with pytest.raises(ControlPlaneError, match="kinds are deployment, replica, route") as info:
        list(client.watch(["nodes"], timeout=5))
    assert info.value.code == "INVALID_ARGUMENT"
    _, token = client.create_user("watcher")
    other = Client(pat=token)
    try:
        with pytest.raises(ControlPlaneError) as info:  # another user's deployments are not there
            list(other.watch(user_id="local", timeout=5))
        assert info.value.code == "NOT_FOUND"
        with pytest.raises(ControlPlaneError, match="only the admin") as info:
            list(other.watch(user_id="*", timeout=5))
        # The admin's own deployments never reach another user's stream.
        assert [e.kind for e in other.watch(timeout=2)] == ["synced"]
    finally:
        other.close()
    assert any(e.user_id == "local" for e in client.watch(user_id="*", timeout=2))


def test_waiting_works_when_every_watch_slot_is_taken(client, tmp_path):
    """Watchers are capped (each holds a daemon thread: per user, max_watches, and in all); a waiter
    refused one polls instead."""
    def take_every_slot(stack: contextlib.ExitStack) -> None:
        for _ in range(MAX_WATCHERS + 1):  # this client's route watch may hold one already
            stream = client.watch(timeout=120)
            stack.callback(stream.close)
            try:
                assert next(stream).kind in ("deployment", "replica", "route", "synced")  # it is open
            except ControlPlaneError as e:
                assert e.code == "RESOURCE_EXHAUSTED" and ("watchers already" in str(e) or "max_watches" in str(e))
                return
        pytest.fail(f"more than {MAX_WATCHERS} watchers were let in")

    with contextlib.ExitStack() as stack:
        take_every_slot(stack)
        time.sleep(1)  # streams earlier tests closed end on the daemon's side; take their slots too
        take_every_slot(stack)
        calls = []
        original = _watch.ticks

        def counted(*args):
            calls.append(args)
            yield from original(*args)

        _watch.ticks = counted
        try:
            dep = client.deploy(folder(tmp_path / "polled", "polled"))
        finally:
            _watch.ticks = original
        assert calls and dep.rollout.readiness.done
        assert Model(model_id="polled", client=client).predict("x") == "hello x"
