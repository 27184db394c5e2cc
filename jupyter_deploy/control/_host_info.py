"""What this host offers to runners: CPUs, memory and GPUs.

GPUs come from ``nvidia-smi`` when it is on PATH. ``JUPYTER_DEPLOY_FAKE_GPUS=N``
reports N fake GPUs instead, so GPU allocation and pinning can be exercised on
a machine without one; a comma-separated list of names (``NVIDIA A10G,NVIDIA
H100``) reports one fake GPU of each name, so choice by type can be too.

Example::

    host = detect()
    host.cpus, host.memory, [g.name for g in host.gpus]
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field

FAKE_GPUS_ENV = "JUPYTER_DEPLOY_FAKE_GPUS"
FAKE_GPU_NAME = "Fake GPU"
FAKE_GPU_MEMORY = 16 << 30
#: Seconds nvidia-smi gets before it counts as "no GPUs" (a wedged driver can hang it).
NVIDIA_SMI_TIMEOUT = 5.0

log = logging.getLogger("jupyter_deploy.host")


@dataclass(frozen=True)
class Gpu:
    """One GPU: its index (as CUDA_VISIBLE_DEVICES counts), name and memory in bytes."""

    index: int
    name: str
    memory: int


@dataclass(frozen=True)
class HostInfo:
    """This host's capacity: CPU cores, memory in bytes, and its GPUs."""

    cpus: float
    memory: int
    gpus: list[Gpu] = field(default_factory=list)


def detect() -> HostInfo:
    """This host's CPUs, memory and GPUs (fake ones when ``JUPYTER_DEPLOY_FAKE_GPUS`` is set).

    Raises ValueError when ``JUPYTER_DEPLOY_FAKE_GPUS`` is not a whole number >= 0.

    Example::

        detect()  # HostInfo(cpus=16.0, memory=137438953472, gpus=[Gpu(index=0, name='NVIDIA H100 ...', ...)])
        # with JUPYTER_DEPLOY_FAKE_GPUS=2: gpus == [Gpu(0, 'Fake GPU', 16 GiB), Gpu(1, 'Fake GPU', 16 GiB)]
    """
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return HostInfo(cpus=float(os.cpu_count() or 1), memory=memory, gpus=_gpus())


def _gpus() -> list[Gpu]:
    fake = os.environ.get(FAKE_GPUS_ENV, "").strip()
    if fake:
        if fake.isdigit():
            return [Gpu(i, FAKE_GPU_NAME, FAKE_GPU_MEMORY) for i in range(int(fake))]
        names = [n.strip() for n in fake.split(",")]
        if not all(names):
            raise ValueError(f"{FAKE_GPUS_ENV} must be a whole number >= 0 or a comma-separated list of GPU "
                             f"names, got {fake!r}")
        return [Gpu(i, name, FAKE_GPU_MEMORY) for i, name in enumerate(names)]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, check=True).stdout
        return [_parse_gpu(line) for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        # A host whose driver is broken serves CPU models rather than nothing.
        log.warning("no GPUs: nvidia-smi failed (%s)", e)
        return []


def _parse_gpu(line: str) -> Gpu:
    # "0, NVIDIA H100 80GB HBM3, 81559": split from both ends in case a name holds a comma.
    index, rest = line.split(",", 1)
    name, memory_mib = rest.rsplit(",", 1)
    return Gpu(int(index), name.strip(), int(float(memory_mib)) << 20)
