"""Limits (issue 13, items 4 and 6), against real daemons and runners: deployments bounded by their
nodepool, per-user limits from limits.yaml (each refusal names the limit and its value), stream
budgets and idle uploads, List under stream load, Delete while replicas start, and SIGTERM under load.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import write_model
from daemon_helpers import ECHO_MODEL, alive, daemon_pid, isolated_home, wait_for
from test_scheduler import Platform

from jupyter_deploy import Client, ControlPlaneError, Nodepool
from jupyter_deploy.configs.limits import LimitsConfig
from jupyter_deploy.control import _limits
from jupyter_deploy.control._host_info import HostInfo
from jupyter_deploy.control._streams import MAX_TRANSFERS
from jupyter_deploy.proto import control_pb2 as cpb

pytestmark = pytest.mark.timeout(240)

LIMITS = """\
defaults:
  max_deployments: 2
  max_replicas: 3
  max_versions: 3
  max_upload_mb: 1
  max_control_streams: 2
  max_watches: 2
users:
  local: {max_deployments: 20, max_replicas: 40, max_versions: 100, max_upload_mb: 64}
  carol: {max_control_streams: 64}
upload_idle_seconds: 2
"""

SLOW_LOAD = '''
import time

from jupyter_deploy import ModelClass


class Slow(ModelClass):
    def load_model(self):
        time.sleep(300)  # a big model's weights: it stays STARTING

    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "limits") as home:
        (home / "limits.yaml").write_text(LIMITS)
        yield home


@pytest.fixture(scope="module")
def admin(home) -> Iterator[Client]:
    client = Client()
    yield client
    client.close()


TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def users(admin) -> Iterator[dict[str, Client]]:
    TOKENS.update({name: admin.create_user(name)[1] for name in ("bob", "carol", "dan")})
    clients = {name: Client(pat=token) for name, token in TOKENS.items()}
    yield clients
    for c in clients.values():
        c.close()


def model(tmp_path: Path, model_id: str, source: str = ECHO_MODEL, extra: bytes = b"") -> Path:
    folder = write_model(tmp_path / model_id, source, model_id=model_id)
    if extra:
        (folder / "1" / "weights.bin").write_bytes(extra)
    return folder


def refused(call, *names: str) -> str:
    """The message of the RESOURCE_EXHAUSTED ``call()`` raises; it names each of ``names``."""
    with pytest.raises(ControlPlaneError) as e:
        call()
    assert e.value.code == "RESOURCE_EXHAUSTED", str(e.value)
    for name in names:
        assert name in str(e.value), str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- capacity


def test_a_deployment_its_nodepool_cannot_hold_is_refused_naming_the_numbers(admin, users, tmp_path):
    bob = users["bob"]
    bob.upload_model(model(tmp_path, "wide"))
    pool = Nodepool("local", client=bob)
    cpus = f"{float(os.cpu_count()):g} CPUs"
    message = refused(lambda: pool.create_deployment("wide", worker={"model": {"id": "wide"}},
                                                     autoscale_config={"min_replicas": 100000}),
                      "min_replicas 100000 x 0.1 CPU = 10000 CPUs", f"the nodepool has {cpus}",
                      "lower min_replicas")
    assert message.startswith("deployment wide does not fit nodepool local/local")
    # The maximum too: replicas the autoscaler would add could only ever wait.
    refused(lambda: pool.create_deployment("wide", worker={"model": {"id": "wide"}},
                                           autoscale_config={"min_replicas": 0, "max_replicas": 100000}),
            "max_replicas 100000 x 0.1 CPU")
    # The admin's larger limits make no nodepool larger.
    admin.upload_model(model(tmp_path, "wide"))
    refused(lambda: Nodepool("local", client=admin).create_deployment(
        "wide", worker={"model": {"id": "wide"}}, autoscale_config={"min_replicas": 100000}), "min_replicas 100000")
    assert [d.id for d in bob.list_deployments()] == []
    # A nodepool's instance type bounds it below the host: 1 CPU holds 10 replicas of 0.1.
    bob.compute_cluster("local").create_nodepool("small", instance_type={"cpus": 1})
    refused(lambda: Nodepool("small", client=bob).create_deployment(
        "wide", worker={"model": {"id": "wide"}}, autoscale_config={"min_replicas": 0, "max_replicas": 11}),
        "max_replicas 11 x 0.1 CPU = 1.1 CPUs; the nodepool has 1 CPUs")
    bob.compute_cluster("local").delete_nodepools(["small"])


def test_an_update_beyond_the_nodepool_is_refused_and_changes_nothing(admin, tmp_path):
    admin.upload_model(model(tmp_path, "grow"))
    dep = Nodepool("local", client=admin).create_deployment(
        "grow", worker={"model": {"id": "grow"}}, autoscale_config={"min_replicas": 0, "max_replicas": 1})
    refused(lambda: dep.update(autoscale_config={"min_replicas": 100000}), "min_replicas 100000")
    assert dep.refresh().config["autoscale_config"]["min_replicas"] == 0
    dep.delete()


def test_the_scheduler_starts_no_more_replicas_than_fit_and_a_delete_still_acts(tmp_path):
    """A row asking for 100000 replicas (as one written before the check, or by hand) runs what
    the host holds, and a delete is acted on at once."""
    platform = Platform(tmp_path)
    try:
        platform.add_version("v1", SLOW_LOAD, "slow")
        platform.add_deployment("many", "v1", "slow", autoscale_config={"min_replicas": 100000})
        scheduler = platform.scheduler(HostInfo(cpus=0.5, memory=8 << 30))
        wait_for(lambda: "waiting for 0.1 CPU: 0.5 of 0.5 CPUs are reserved by 5 replica(s)"
                 in platform.deployment("many")["reason"], 60, "the deployment to wait for CPU")
        assert len(platform.replicas("many")) == 5
        pids = [r["pid"] for r in platform.replicas("many")]
        with platform.store.tx() as db:
            db.execute("UPDATE deployments SET desired = 'deleted' WHERE id = 'many'")
        scheduler.kick()
        # Replicas that never served are not drained for stop_timeout (45 s): a moment is enough.
        wait_for(lambda: platform.deployment("many") is None, 20, "the deleted deployment's row to go")
        assert not [pid for pid in pids if alive(pid)]
    finally:
        platform.close()


# ---------------------------------------------------------------- per-user limits


def test_each_per_user_limit_is_refused_naming_it_and_its_value(admin, users, tmp_path):
    bob = users["bob"]
    for name in ("one", "two"):
        bob.upload_model(model(tmp_path, name))
    pool = Nodepool("local", client=bob)
    scale_to_zero = {"min_replicas": 0, "scale_to_zero_delay_seconds": 300}
    first = pool.create_deployment("one", worker={"model": {"id": "one"}},
                                   autoscale_config={**scale_to_zero, "max_replicas": 2})
    refused(lambda: pool.create_deployment("two", worker={"model": {"id": "two"}},
                                           autoscale_config={**scale_to_zero, "max_replicas": 2}),
            "deployment two with max_replicas 2 would go over user bob's limit max_replicas = 3",
            "the other deployments ask for 2", "limits.yaml")
    second = pool.create_deployment("two", worker={"model": {"id": "two"}},
                                    autoscale_config={**scale_to_zero, "max_replicas": 1})
    refused(lambda: second.update(autoscale_config={"max_replicas": 2}), "max_replicas = 3")
    bob.compute_cluster("local").create_nodepool("other")
    refused(lambda: Nodepool("other", client=bob).create_deployment(
        "three", worker={"model": {"id": "one"}}, autoscale_config=scale_to_zero),
        "deployment three would go over user bob's limit max_deployments = 2 (2 deployments now)")
    # Counted from the store: a deleted deployment frees its share at once.
    first.delete()
    third = Nodepool("other", client=bob).create_deployment("three", worker={"model": {"id": "one"}},
                                                            autoscale_config=scale_to_zero)
    limits = bob.limits()
    assert limits["max_deployments"] == {"value": 2, "used": 2, "description": "deployments not deleted"}
    assert limits["max_replicas"]["used"] == 2 and limits["upload_idle_seconds"]["used"] is None
    for dep in (second, third):
        dep.delete()
    bob.compute_cluster("local").delete_nodepools(["other"])

    # Uploads: the size is refused at the header, before a byte is stored; then the count.
    refused(lambda: bob.upload_model(model(tmp_path, "big", extra=os.urandom(3 << 20))),
            "would go over user bob's limit max_upload_mb = 1")
    assert not list((Path(os.environ["JUPYTER_DEPLOY_HOME"]) / "blobs" / "tmp").iterdir())
    versions_now = int(bob.limits()["max_versions"]["used"])
    for i in range(3 - versions_now):
        bob.upload_model(model(tmp_path / f"v{i}", "versions", source=ECHO_MODEL + f"\n# {i}\n"))
    refused(lambda: bob.upload_model(model(tmp_path / "last", "versions", source=ECHO_MODEL + "\n# last\n")),
            "a new model version would go over user bob's limit max_versions = 3 (3 versions now")
    # The admin's own limits (limits.yaml gives it more) let it do what bob may not.
    admin.upload_model(model(tmp_path / "admin", "big", extra=os.urandom(3 << 20)))


def test_limits_are_shown_to_their_user_and_to_the_admin_alone(admin, users, home):
    bob = users["bob"]
    assert bob.limits()["max_control_streams"]["value"] == 2
    assert admin.limits("bob")["max_control_streams"]["value"] == 2
    assert admin.limits()["max_replicas"]["value"] == 40
    with pytest.raises(ControlPlaneError, match="only the admin") as e:
        bob.limits("local")
    assert e.value.code == "PERMISSION_DENIED"
    out = subprocess.run([sys.executable, "-m", "jupyter_deploy", "limits"], capture_output=True, text=True,
                         env={**os.environ, "JUPYTER_DEPLOY_PAT": TOKENS["bob"]}, timeout=60, check=True).stdout
    assert out.splitlines()[0].split() == ["limit", "value", "used", "what"]
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("max_replicas")] == \
        [["max_replicas", "3"]]


def test_the_readme_shows_the_default_limits(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (tmp_path / "limits.yaml").write_text(re.search(r"## Limits\n.*?```yaml\n(.+?)```", readme, re.S).group(1))
    shown = _limits.load(tmp_path)
    assert shown.defaults == LimitsConfig().defaults
    assert shown.upload_idle_seconds == LimitsConfig().upload_idle_seconds
    assert shown.for_user("alice").max_replicas == 64


def test_a_bad_limits_file_stops_the_start_with_one_line(tmp_path):
    (tmp_path / "limits.yaml").write_text("defaults:\n  max_replicas: -1\n  max_deplyments: 3\n")
    done = subprocess.run([sys.executable, "-m", "jupyter_deploy.control", "serve", "--home", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path / 'limits.yaml'} is not valid: ")
    assert "defaults.max_replicas" in done.stderr and "max_deplyments" in done.stderr


# ---------------------------------------------------------------- streams


def _raw_upload(client: Client, model_id: str, size: int, chunks: Iterator[bytes]) -> grpc.Future:
    """An UploadModel stream that sends a header announcing ``size`` bytes, then ``chunks``."""
    header = cpb.UploadHeader(model=cpb.ModelRef(model_id=model_id), sha256="0" * 64, size=size,
                              config_json="{}")

    def requests() -> Iterator[cpb.UploadChunk]:
        yield cpb.UploadChunk(header=header)
        for data in chunks:
            yield cpb.UploadChunk(data=data)

    return client._stub.UploadModel.future(requests(), metadata=client._metadata, timeout=120)


def held(client: Client, count: int) -> None:
    """Wait until the daemon counts ``count`` uploads of ``client``'s user open (streams opened
    together reach it in any order)."""
    wait_for(lambda: client.limits()["max_control_streams"]["used"] == count, 30,
             f"{count} uploads of {client.user_id} to be open")


def _trickle(stop: threading.Event) -> Iterator[bytes]:
    """A byte every 0.3 s until ``stop``: an upload in progress, never idle, never done."""
    while not stop.wait(0.3):
        yield b"x"


def _stalled(stop: threading.Event) -> Iterator[bytes]:
    yield b"x"
    stop.wait(120)


def test_an_idle_upload_is_cancelled_and_leaves_nothing_behind(users, home):
    dan, stop = users["dan"], threading.Event()
    try:
        upload = _raw_upload(dan, "idle", 1000, _stalled(stop))
        with pytest.raises(grpc.RpcError) as e:
            upload.result(timeout=60)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "the upload sent nothing for 2 s (the daemon's upload_idle_seconds)" in e.value.details()
        assert "cancelled the upload and kept none of it" in e.value.details()
    finally:
        stop.set()
    wait_for(lambda: not list((home / "blobs" / "tmp").iterdir()), 10, "the partial upload to be removed")
    # Its slot was given back: dan's two uploads fit again.
    stop = threading.Event()
    try:
        uploads = [_raw_upload(dan, "again", 1000, _trickle(stop)) for _ in range(2)]
        held(dan, 2)
        assert not any(u.done() for u in uploads)
    finally:
        stop.set()
    held(dan, 0)  # given back


def test_an_export_nobody_reads_is_cancelled(admin, tmp_path):
    """An export holds a daemon thread while its reader takes nothing (flow control stops the
    sends): it is cancelled after upload_idle_seconds, like an idle upload."""
    version = admin.upload_model(model(tmp_path, "heavy", extra=os.urandom(48 << 20)))
    ref = cpb.VersionRef(model=cpb.ModelRef(model_id="heavy"), version_id=version.id)
    chunks = admin._stub.ExportVersion(ref, metadata=admin._metadata, timeout=120)
    assert next(chunks).sha256 == version.proto.sha256
    held(admin, 1)
    time.sleep(4)  # reads nothing: the daemon's sends stop once the windows are full
    with pytest.raises(grpc.RpcError) as e:
        for _ in chunks:
            pass
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the export's reader took nothing for 2 s" in e.value.details()
    held(admin, 0)


def test_list_answers_while_every_stream_budget_is_full(admin, users):
    """Per user, then for the whole daemon: uploads that fill their budgets, the ones past them
    refused at once, and unary calls and new clients answered all along."""
    dan, carol = users["dan"], users["carol"]
    stop = threading.Event()
    opened: list[grpc.Future] = []
    watches = []
    try:
        for _ in range(2):  # dan's max_control_streams
            opened.append(_raw_upload(dan, "held", 1 << 20, _trickle(stop)))
        held(dan, 2)
        extra = _raw_upload(dan, "held", 1 << 20, _trickle(stop))
        with pytest.raises(grpc.RpcError) as e:
            extra.result(timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "another upload would go over user dan's limit max_control_streams = 2" in e.value.details()
        # carol may hold 64: the daemon's own cap (MAX_TRANSFERS for everyone) stops her first.
        for _ in range(MAX_TRANSFERS - 2):
            opened.append(_raw_upload(carol, "held", 1 << 20, _trickle(stop)))
        held(carol, MAX_TRANSFERS - 2)
        assert not any(u.done() for u in opened), [u.exception() for u in opened if u.done()]
        with pytest.raises(grpc.RpcError) as e:
            _raw_upload(carol, "held", 1 << 20, _trickle(stop)).result(timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"the daemon has {MAX_TRANSFERS} uploads and exports open" in e.value.details()
        # Watches have their own budget: dan's two, the third refused.
        for _ in range(2):
            watch = dan.watch(timeout=60)
            watches.append(watch)
            assert next(watch).kind == "synced"
        refused(lambda: next(dan.watch(timeout=60)), "max_watches = 2")
        # The control plane answers, everyone, and a new client connects.
        for client in (admin, dan, carol):
            client.call("List", cpb.ListRequest(parent=cpb.ResourceRef(kind="deployment")), timeout=5)
            client.call("GetInfo", cpb.InfoRequest(), timeout=5)
        fresh = Client()
        assert fresh.user_id == "local"
        fresh.close()
    finally:
        stop.set()
        for watch in watches:
            watch.close()
    for upload in opened:  # each ends (its data falls short of its header), giving its slot back
        with contextlib.suppress(grpc.RpcError):
            upload.result(timeout=30)
    held(carol, 0)  # given back


# ---------------------------------------------------------------- delete and SIGTERM under load


def test_a_stop_that_hangs_still_ends_the_process_by_the_deadline():
    """The last resort behind the orderly stop: told to stop, the process ends by the deadline
    even when its main thread never gets there (here: it sleeps)."""
    script = ("import threading, time\n"
              "from jupyter_deploy.control import daemon\n"
              "stopping = threading.Event()\n"
              "daemon._exit_by_deadline([], stopping, deadline=0.5)\n"
              "stopping.set()\n"
              "time.sleep(60)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "still stopping 0.5 s after being told to stop: exiting now" in done.stderr


def _runner_pids(home: Path) -> list[int]:
    """Runners of ``home``: spawned ones name their port file under it; those the runner template
    forked have the template's command line (the template itself is the daemon's child)."""
    out = subprocess.run(["pgrep", "-f", f"{home}/run/"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    out = subprocess.run(["pgrep", "-f", f"jupyter_deploy.runner._zygote .*--home {home}"],
                         capture_output=True, text=True)
    try:
        daemon = daemon_pid(home)
    except (OSError, ValueError):
        daemon = -1
    for pid in map(int, out.stdout.split()):
        try:
            parent = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
        except (OSError, ValueError, IndexError):
            continue  # gone
        if parent != daemon:
            pids.append(pid)
    return pids


def test_delete_answers_while_replicas_start_and_sigterm_stops_the_daemon_under_load(tmp_path_factory, tmp_path):
    with isolated_home(tmp_path_factory, "sigterm") as home:
        client = Client()
        client.upload_model(model(tmp_path, "echo"))
        client.upload_model(model(tmp_path, "slow", SLOW_LOAD))
        pool = Nodepool("local", client=client)
        pool.create_deployment("echo", worker={"model": {"id": "echo"}}).wait_until_ready(120)

        def starting(deployment_id: str, count: int) -> None:
            wait_for(lambda: sum(r["state"] == "STARTING" and r["pid"] is not None for r in
                                 client.deployment(deployment_id).status["replicas"]) >= count,
                     60, f"{count} replicas of {deployment_id} to start")

        slow = pool.create_deployment("slow", worker={"model": {"id": "slow"}},
                                      autoscale_config={"min_replicas": 4}, run_test=False)
        starting("slow", 4)
        slow.delete()  # no error, though no replica ever served
        assert [d.id for d in client.list_deployments()] == ["echo"]
        wait_for(lambda: len(_runner_pids(home)) == 1, 20, "the slow replicas to be stopped")

        # Load: replicas starting (and never loading), uploads in flight, the scheduler busy.
        pool.create_deployment("slow", worker={"model": {"id": "slow"}},
                               autoscale_config={"min_replicas": 6}, run_test=False)
        starting("slow", 2)
        stop = threading.Event()
        uploads = [_raw_upload(client, "inflight", 1 << 20, _trickle(stop)) for _ in range(3)]
        try:
            pid = daemon_pid(home)
            began = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), 10, "the daemon to exit after SIGTERM")
            print(f"the daemon exited {time.monotonic() - began:.2f} s after SIGTERM")
        finally:
            stop.set()
        for upload in uploads:
            with pytest.raises(grpc.RpcError):
                upload.result(timeout=30)
        wait_for(lambda: not _runner_pids(home), 10, "the runners to be stopped")
        with contextlib.closing(sqlite3.connect(home / "state.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert {r[0] for r in db.execute("SELECT id FROM deployments")} == {"echo", "slow"}
            assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 2
        client.close()
