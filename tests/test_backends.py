"""The nodepool backend seam, with real runner processes.

``LocalBackend`` on its own (start, health, drain, stop; re-adoption by a second
backend, as after a daemon restart), and the scheduler over a second
implementation that wraps it and records every call: the scheduler reaches
replicas only through ``NodepoolBackend``.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for, write_model
from test_scheduler import ECHO, USER, Platform, alive, platform  # noqa: F401 - the fixture

from jupyter_deploy.control import _scheduler
from jupyter_deploy.control._backends import (
    Backends,
    Health,
    LocalBackend,
    NodepoolBackend,
    ReplicaHandle,
    ReplicaSpec,
    backend_for,
)
from jupyter_deploy.control._errors import FailedPrecondition
from jupyter_deploy.control._host_info import HostInfo
from jupyter_deploy.control._replica_logs import LogFile
from jupyter_deploy.control._resources import needs_from
from jupyter_deploy.runner._limits import EXIT_OUT_OF_MEMORY, describe_exit

pytestmark = pytest.mark.timeout(60)

HOST = HostInfo(cpus=2.0, memory=8 << 30)


class Recording(NodepoolBackend):
    """A second backend: LocalBackend's replicas, with every call but ``poll`` recorded in order."""

    provider = "local"

    def __init__(self, inner: LocalBackend):
        self.inner = inner
        self.calls: list[tuple[str, str]] = []  # (method, replica id)
        self.health_seen: dict[str, Health] = {}

    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        self.calls.append(("start", spec.replica_id))
        return self.inner.start(spec)

    def poll(self, handle: ReplicaHandle) -> str | None:
        return self.inner.poll(handle)

    def address(self, handle: ReplicaHandle) -> str | None:
        return self.inner.address(handle)

    def health(self, handle: ReplicaHandle) -> Health:
        health = self.inner.health(handle)
        if self.health_seen.get(handle.replica_id) is not health:  # record changes, not every probe
            self.calls.append((f"health:{health.value}", handle.replica_id))
        self.health_seen[handle.replica_id] = health
        return health

    def drain(self, handle: ReplicaHandle, grace: float) -> None:
        self.calls.append(("drain", handle.replica_id))
        self.inner.drain(handle, grace)

    def stop(self, handle: ReplicaHandle) -> None:
        self.calls.append(("stop", handle.replica_id))
        self.inner.stop(handle)

    def list_running(self) -> list[ReplicaHandle]:
        self.calls.append(("list_running", ""))
        return self.inner.list_running()

    def close(self) -> None:
        self.inner.close()

    def of(self, rid: str) -> list[str]:
        """The life of one replica: start, serving, drain and stop calls, in order (a replica that
        runs ``test()`` first answers "loading" or not at all, as timing has it)."""
        return [method for method, r in self.calls
                if r == rid and method in ("start", "health:serving", "drain", "stop")]


def spec_for(home: Path, model: Path, rid: str) -> ReplicaSpec:
    return ReplicaSpec(replica_id=rid, user_id=USER, deployment_id="echo", version_id="v1", model_path=model,
                       python=sys.executable, args=(), env={"MODEL_VERSION": "v1", "DEPLOYMENT_ID": "echo"},
                       gpus=(), resources=needs_from({}), log=LogFile.of(home, USER, "echo"))


def test_the_scheduler_drives_replicas_only_through_the_backend(platform: Platform) -> None:  # noqa: F811
    platform.add_deployment("echo", platform.add_version("v1"), drain_seconds=0.5)
    platform.add_version("v2")
    recording = Recording(LocalBackend(platform.root / "home", HOST))
    configs: list[dict] = []

    def backends(cluster_config: dict) -> NodepoolBackend:
        configs.append(cluster_config)
        return recording

    scheduler = platform.scheduler(backends=backends)
    platform.wait_state("echo", "RUNNING")
    assert recording.calls[0] == ("list_running", "")  # re-adoption comes first
    assert configs[0] == {}  # the cluster row's config (the test platform's is empty: local)
    [old] = platform.replicas("echo")
    assert recording.of(old["id"]) == ["start", "health:serving"]

    with platform.store.tx() as db:
        db.execute("UPDATE deployments SET version_id = 'v2' WHERE id = 'echo'")
    scheduler.kick()
    wait_for(lambda: [r["version_id"] for r in platform.replicas("echo")] == ["v2"], 30, "the rollout")
    platform.wait_state("echo", "RUNNING")
    assert platform.predict(scheduler, "echo") == "v2:hi"
    [new] = platform.replicas("echo")
    # The old one drains only once the new one serves (the switch), and is stopped last.
    assert recording.of(old["id"]) == ["start", "health:serving", "drain", "stop"]
    assert recording.calls.index(("health:serving", new["id"])) < recording.calls.index(("drain", old["id"]))
    assert recording.of(new["id"]) == ["start", "health:serving"]
    wait_for(lambda: not alive(old["pid"]), 15, "the old replica to exit")

    scheduler.stop(stop_runners=True)
    assert recording.of(new["id"])[-2:] == ["drain", "stop"]
    assert not alive(new["pid"])


def test_the_scheduler_module_spawns_and_signals_nothing_itself() -> None:
    tree = ast.parse(Path(_scheduler.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not imported & {"os", "subprocess", "signal", "grpc", "grpc_health", "shutil"}
    assert "/proc" not in Path(_scheduler.__file__).read_text()


def test_local_backend_readopts_a_runner_after_a_daemon_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model = write_model(tmp_path / "v1", ECHO, "echo")
    first = LocalBackend(home, HOST)
    handle = first.start(spec_for(home, model, "0123456789ab"))
    try:
        wait_for(lambda: first.health(handle) is Health.SERVING, 30, "the runner to serve")
        address = first.address(handle)
        assert address is not None and address.startswith("127.0.0.1:")
        first.close()  # the daemon goes; the runner keeps serving

        (home / "run" / "fedcba987654.port").write_text("9")  # a runner that is long gone left this
        second = LocalBackend(home, HOST)
        [adopted] = second.list_running()
        assert (adopted.replica_id, adopted.pid) == ("0123456789ab", handle.pid)
        assert not (home / "run" / "fedcba987654.port").exists()
        assert second.poll(adopted) is None
        assert second.address(adopted) == address
        assert second.health(adopted) is Health.SERVING

        second.drain(adopted, grace=10)  # SIGTERM: the runner exits; not our child, so no exit code
        wait_for(lambda: second.poll(adopted) is not None, 15, "the adopted runner to exit")
        assert second.poll(adopted) == "exit code unknown (re-adopted after a daemon restart)"
        second.stop(adopted)
        assert not (home / "run" / "0123456789ab.port").exists()
        assert second.list_running() == []
        logs = LogFile.of(home, USER, "echo").tail(50)
        assert any("replica 0123456789ab of version v1 starting (GPUs: none)" in line for line in logs)
    finally:
        first.stop(handle)
    assert first.poll(handle) in ("signal SIGTERM", "exit code 0")  # our child: its exit is known


def test_local_backend_stop_kills_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    backend = LocalBackend(home, HOST)
    handle = backend.start(spec_for(home, write_model(tmp_path / "v1", ECHO, "echo"), "00000000000a"))
    assert backend.poll(handle) is None
    assert backend.health(handle) in (Health.SILENT, Health.LOADING, Health.SERVING)
    started = time.monotonic()
    backend.stop(handle)
    assert time.monotonic() - started < 5
    assert backend.poll(handle) == "signal SIGKILL"
    backend.stop(handle)  # again: nothing happens
    assert backend.list_running() == []


def test_exit_descriptions_and_the_node_it_describes() -> None:
    assert describe_exit(EXIT_OUT_OF_MEMORY).startswith("out of memory")
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(3) == "exit code 3"
    [node] = LocalBackend(Path("/nonexistent"), HOST).describe()
    assert (node.cpus, node.memory, node.gpus) == (2.0, 8 << 30, [])


def test_a_provider_without_a_backend_is_refused(platform: Platform, tmp_path: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FailedPrecondition, match="no kubernetes backend"):
        backend_for({"cloud_provider": "kubernetes"}, tmp_path, HOST)
    backends = Backends(tmp_path, HOST)
    assert backends({"cloud_provider": "local", "region": "a"}) is backends({}) is not None
    # One backend per Ray cluster, whatever else its clusters' configs say (no Ray is needed for this).
    ray = {"cloud_provider": "ray", "ray_address": "10.0.0.1:6379"}
    assert backends(ray) is backends({**ray, "region": "b"}) is not backends({**ray, "ray_address": "10.0.0.2:1"})
    assert backends(ray).places_replicas and not backends({}).places_replicas

    # A Ray cluster with no address anywhere: its deployments fail saying so.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with platform.store.tx() as db:
        db.execute("UPDATE compute_clusters SET config_json = '{\"cloud_provider\": \"ray\"}'")
    platform.add_deployment("echo", platform.add_version("v1"))
    platform.scheduler()
    platform.wait_state("echo", "FAILED")
    assert "no ray_address in the compute cluster's config and no RAY_ADDRESS" in platform.deployment("echo")["reason"]
    assert platform.replicas("echo") == []
