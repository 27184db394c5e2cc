"""inference_compute_info on the local backend: GPUs by type and count, a memory cap, a CPU bound.

Scheduler tests use a real Store and real runner processes (``test_scheduler.Platform``)
on a host with named fake GPUs; the refusal at creation goes through a real daemon.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunnerProcess, wait_for, write_model
from daemon_helpers import isolated_home
from test_scheduler import Platform

from jupyter_deploy import Client, ControlPlaneError, Nodepool, RunnerError
from jupyter_deploy.control._host_info import FAKE_GPUS_ENV, Gpu, HostInfo, detect
from jupyter_deploy.control._resources import Needs, gpu_matches, never_fits, runner_limit_args

pytestmark = pytest.mark.timeout(120)

PROBE = '''
import json
import os

from jupyter_deploy import ModelClass


class Probe(ModelClass):
    def load_model(self):
        size = int(os.environ.get("HOG_MB_AT_LOAD", "0"))
        self.ballast = b"x" * (size << 20)

    @ModelClass.method
    def predict(self, text: str) -> str:
        return json.dumps({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                           "cores": sorted(os.sched_getaffinity(0)),
                           "omp": os.environ.get("OMP_NUM_THREADS", "")})

    @ModelClass.method
    def hog(self, mb: int) -> int:
        self.more = b"y" * (mb << 20)
        return len(self.more)
'''

HOG_AT_LOAD = PROBE.replace('os.environ.get("HOG_MB_AT_LOAD", "0")', '"400"')

HOST = HostInfo(cpus=2.0, memory=8 << 30, gpus=[Gpu(0, "NVIDIA A10G", 24 << 30), Gpu(1, "NVIDIA H100 80GB HBM3", 80 << 30),
                                                 Gpu(2, "NVIDIA A10G", 24 << 30)])


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    try:
        yield p
    finally:
        p.close()


def probe(platform: Platform, scheduler, deployment_id: str) -> dict:
    address, _ = scheduler.route("local", deployment_id)
    return json.loads(platform.call(address, deployment_id))


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize("name, patterns, expected", [
    ("NVIDIA H100 80GB HBM3", ("NVIDIA-H100",), True),
    ("NVIDIA A10G", ("NVIDIA-H100",), False),
    ("NVIDIA A10G", ("nvidia-*",), True),
    ("NVIDIA A10G", ("NVIDIA-H100", "A10G"), True),
    ("Fake GPU", (), True),
])
def test_accelerator_types_match_detected_names(name, patterns, expected) -> None:
    assert gpu_matches(name, patterns) is expected


def test_fake_gpus_can_be_named(monkeypatch) -> None:
    monkeypatch.setenv(FAKE_GPUS_ENV, "NVIDIA A10G, NVIDIA H100")
    assert [(g.index, g.name) for g in detect().gpus] == [(0, "NVIDIA A10G"), (1, "NVIDIA H100")]
    monkeypatch.setenv(FAKE_GPUS_ENV, "A10G,,H100")
    with pytest.raises(ValueError, match="comma-separated list of GPU names"):
        detect()


def test_what_can_never_fit_says_why() -> None:
    h100 = Needs(python="", num_accelerators=1, accelerator_memory=0, memory=0, accelerator_types=("NVIDIA-H100",))
    assert never_fits(1, h100, HOST) == ""
    assert "needs 2 GPU(s) of type NVIDIA-H100; this nodepool has 1 such GPU(s)" in never_fits(2, h100, HOST)
    small_pool = {"instance_type": {"accelerators": 0, "cpus": 2, "memory": 8 << 30}}
    assert "this nodepool has 0 such GPU(s)" in never_fits(1, h100, HOST, small_pool)
    greedy = Needs(python="", num_accelerators=0, accelerator_memory=0, memory=0, cpu_limit=4)
    assert "cpu_limit is 4 cores; this nodepool has 2" in never_fits(0, greedy, HOST)
    assert runner_limit_args(Needs("", 0, 0, 0, memory_limit=1 << 30, cpu_limit=0.5)) == \
        ["--memory-limit", str(1 << 30), "--cpu-limit", "0.5"]


# ---------------------------------------------------------------- the scheduler


def test_gpus_are_chosen_by_type_and_count_and_a_busy_type_waits(platform: Platform) -> None:
    platform.add_version("vh", PROBE, "probeh", {"num_accelerators": 1, "accelerator_type": ["NVIDIA-H100"],
                                                  "cpu_limit": "1"})
    platform.add_version("va", PROBE, "probea", {"num_accelerators": 2, "accelerator_type": ["NVIDIA-A10G"]})
    platform.add_version("vh2", PROBE, "probeh2", {"num_accelerators": 1, "accelerator_type": ["NVIDIA-H100"]})
    platform.add_deployment("h", "vh", "probeh")
    platform.add_deployment("a", "va", "probea")
    scheduler = platform.scheduler(HOST)
    platform.wait_state("h", "RUNNING")
    platform.wait_state("a", "RUNNING")
    h = probe(platform, scheduler, "h")
    assert h["gpus"] == "1"
    assert len(h["cores"]) == 1 and h["omp"] == "1"  # cpu_limit 1: pinned to one core
    assert probe(platform, scheduler, "a")["gpus"] == "0,2"
    # The only H100 is taken: a second H100 deployment waits, saying why, while A10Gs stay free of it.
    platform.add_deployment("h2", "vh2", "probeh2")
    scheduler.kick()
    wait_for(lambda: "waiting for 1 GPU(s) of type NVIDIA-H100: all 1 in use by h"
             in platform.deployment("h2")["reason"], 30, "h2 to wait for the H100")
    assert platform.deployment("h2")["state"] == "STARTING"
    assert platform.replicas("h2") == []


def test_a_replica_over_its_memory_cap_is_reported_out_of_memory(platform: Platform) -> None:
    platform.add_version("v1", HOG_AT_LOAD, "hog", {"cpu_memory": "256Mi"})
    platform.add_deployment("hog", "v1", "hog")
    platform.scheduler(HOST, crash_limit=2, backoff=0.05)
    platform.wait_state("hog", "FAILED", timeout=60)
    reason = platform.deployment("hog")["reason"]
    assert "ended with out of memory (its resident memory went over inference_compute_info.cpu_memory)" in reason
    assert "out of memory: resident memory" in reason and "over the replica's limit of 256 MiB" in reason


# ---------------------------------------------------------------- a runner


def test_a_runner_stops_itself_over_its_memory_limit_and_says_so(tmp_path) -> None:
    r = RunnerProcess(write_model(tmp_path / "m", PROBE), "--memory-limit", "300Mi")
    try:
        client = r.client(timeout=30)
        client.wait_ready(60)
        assert client.hog(10) == 10 << 20
        try:  # the answer may leave before the watch's next look; the process ends either way
            client.hog(600)
        except RunnerError:
            pass
        assert r.proc.wait(30) == 5
        with pytest.raises(RunnerError):
            client.hog(1)
        assert "out of memory: resident memory" in r.stderr()
        assert "over the replica's limit of 300 MiB" in r.stderr()
    finally:
        r.stop()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs at least 2 usable cores to show a bound")
def test_cpu_limit_pins_a_runner_to_that_many_cores(tmp_path) -> None:
    r = RunnerProcess(write_model(tmp_path / "m", PROBE), "--cpu-limit", "500m")
    try:
        client = r.client(timeout=30)
        client.wait_ready(60)
        out = json.loads(client.predict("x"))
        assert len(out["cores"]) == 1 and out["omp"] == "1"
    finally:
        r.stop()


# ---------------------------------------------------------------- creation


def _folder(root: Path, model_id: str, compute: str) -> Path:
    folder = write_model(root, PROBE, model_id)
    (folder / "config.yaml").write_text(f"model:\n  id: {model_id}\ninference_compute_info:\n"
                                        + textwrap.indent(textwrap.dedent(compute), "  "))
    return folder


def test_a_deployment_that_can_never_fit_its_nodepool_is_refused_at_creation(tmp_path_factory, tmp_path) -> None:
    with isolated_home(tmp_path_factory, "resources_home", **{FAKE_GPUS_ENV: "NVIDIA A10G,NVIDIA A10G"}):
        client = Client()
        nodepool = Nodepool("local", compute_cluster_id="local", client=client)
        client.upload_model(_folder(tmp_path / "h", "wantsh100",
                                    "num_accelerators: 1\naccelerator_type: [NVIDIA-H100]\n"))
        with pytest.raises(ControlPlaneError) as e:
            nodepool.create_deployment("h", worker={"model": {"id": "wantsh100"}})
        assert e.value.code == "FAILED_PRECONDITION"
        assert ("deployment h can never run on nodepool local/local: out of capacity: a replica needs 1 GPU(s) "
                "of type NVIDIA-H100; this nodepool has 0 such GPU(s) (detected: NVIDIA A10G)") in str(e.value)
        client.upload_model(_folder(tmp_path / "m", "huge", "cpu_memory: 1000Ti\n"))
        with pytest.raises(ControlPlaneError, match="needs 1024000.0 GiB of memory"):
            nodepool.create_deployment("m", worker={"model": {"id": "huge"}})
        assert client.list_deployments() == []
        # What fits is created and runs on a matching GPU.
        client.upload_model(_folder(tmp_path / "a", "wantsa10g",
                                    "num_accelerators: 2\naccelerator_type: [NVIDIA-A10G]\n"))
        d = nodepool.create_deployment("a", worker={"model": {"id": "wantsa10g"}}).wait_until_ready(120)
        assert d.status["replicas"][0]["gpus"] == "0,1"
