"""What one replica asks for (a version's ``inference_compute_info``) and whether a host can give it.

Shared by the scheduler (which reserves GPUs and memory per replica, and makes a
replica that does not fit *now* wait) and by deployment creation (which refuses a
deployment that can *never* fit its nodepool).

- ``num_accelerators`` GPUs, each matching ``accelerator_type`` when given: a
  pattern matches a detected GPU name case-insensitively, ``-`` and ``_`` read as
  spaces, ``*`` as any text, anywhere in the name (``NVIDIA-H100`` matches
  ``NVIDIA H100 80GB HBM3``; ``NVIDIA-*`` matches any NVIDIA GPU), and each with at
  least ``accelerator_memory``;
- ``cpu_memory_requests`` (else ``cpu_memory``) of host memory reserved; ``cpu_memory``
  is also the cap the runner enforces on its resident memory;
- ``cpu_limit`` cores at most (the runner pins itself to that many cores);
- ``cpu_requests`` (else ``cpu_limit``) cores reserved on the host, at least
  ``MIN_CPU`` (a runner process costs that much however little its model asks for):
  this bounds how many replicas a host runs when their versions ask for nothing else.

A deployment's replicas together (``over_capacity``: ``min_replicas`` and
``max_replicas`` times one replica's needs) must fit its nodepool; what fits in total
but not beside the other deployments' replicas waits.

Example::

    needs = needs_from(json.loads(version.config_json), python=version.python)
    why = never_fits(needs.num_accelerators, needs, host)   # "" when it can fit
    why = over_capacity("min_replicas", 3, needs.num_accelerators, needs, host, nodepool)
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from ..config import parse_quantity

#: Cores a replica reserves at least (its version's ``cpu_requests`` or ``cpu_limit`` may ask more).
MIN_CPU = 0.1


@dataclass(frozen=True)
class Needs:
    """What one replica of a version asks for (versions are immutable, so this is cached)."""

    python: str
    num_accelerators: int
    accelerator_memory: float  # bytes per GPU; 0: any GPU will do
    memory: float              # bytes reserved on the host; 0: nothing reserved
    accelerator_types: tuple[str, ...] = ()  # patterns; empty: any type
    memory_limit: float = 0.0  # bytes of resident memory a replica may use; 0: no cap
    cpu_limit: float = 0.0     # cores; 0: no bound
    cpu_request: float = 0.0   # cores asked for (cpu_requests, else cpu_limit); 0: none given

    @property
    def cpu(self) -> float:
        """Cores one replica reserves on the host (at least ``MIN_CPU``)."""
        return max(self.cpu_request, MIN_CPU)


def needs_from(config: dict, python: str = "") -> Needs:
    """The needs in a version's checked config (its ``inference_compute_info``)."""
    compute = config.get("inference_compute_info") or {}
    types = compute.get("accelerator_type") or ()
    limit = compute.get("cpu_memory")
    cpu_limit = parse_quantity(compute.get("cpu_limit") or 0)
    return Needs(
        python=python, num_accelerators=int(compute.get("num_accelerators") or 0),
        accelerator_memory=parse_quantity(compute.get("accelerator_memory") or 0),
        memory=parse_quantity(compute.get("cpu_memory_requests", limit) or 0),
        accelerator_types=(types,) if isinstance(types, str) else tuple(types),
        memory_limit=parse_quantity(limit or 0), cpu_limit=cpu_limit,
        cpu_request=parse_quantity(compute.get("cpu_requests") or 0) or cpu_limit)


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


def gpu_matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a detected GPU name matches any of the patterns (any name when there are none).

    >>> gpu_matches("NVIDIA H100 80GB HBM3", ("NVIDIA-H100",)), gpu_matches("NVIDIA A10G", ("NVIDIA-H100",))
    (True, False)
    """
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(_normal(name), f"*{_normal(p)}*") for p in patterns)


def eligible(gpus: list[Any], needs: Needs) -> list[Any]:
    """The host's GPUs a replica may use: of a matching type, with enough memory."""
    return [g for g in gpus if g.memory >= needs.accelerator_memory and gpu_matches(g.name, needs.accelerator_types)]


def describe_gpus(count: int, needs: Needs) -> str:
    """``2 GPU(s) of type NVIDIA-H100 with 40.0 GiB each`` and the like."""
    kind = f" of type {' or '.join(needs.accelerator_types)}" if needs.accelerator_types else ""
    each = f" with {_gib(needs.accelerator_memory)} each" if needs.accelerator_memory else ""
    return f"{count} GPU(s){kind}{each}"


@dataclass(frozen=True)
class Capacity:
    """What a nodepool offers in all: cores, bytes of memory, and GPUs a replica may use."""

    cpus: float
    memory: float
    gpus: int


def capacity(needs: Needs, host: Any, nodepool: dict | None = None) -> Capacity:
    """What ``host`` (within ``nodepool``'s ``instance_type``, a checked config) offers replicas
    with ``needs``: the local backend's nodepool is this one host."""
    offered = len(eligible(host.gpus, needs))
    cpus, memory = float(host.cpus), float(host.memory)
    if nodepool is not None:
        it = nodepool.get("instance_type") or {}
        offered = min(offered, int(it.get("accelerators", offered)))
        cpus = min(cpus, float(it.get("cpus", cpus)))
        memory = min(memory, float(it.get("memory", memory)))
    return Capacity(cpus, memory, offered)


def never_fits(count: int, needs: Needs, host: Any, nodepool: dict | None = None) -> str:
    """Why one replica (with ``count`` GPUs) can never fit on ``host`` (and ``nodepool``), or "".

    ``nodepool`` is a nodepool's checked config; its ``instance_type`` bounds
    what the host offers.
    """
    has = capacity(needs, host, nodepool)
    if count > has.gpus:
        names = sorted({g.name for g in host.gpus})
        detected = f" (detected: {', '.join(names)})" if names else ""
        return (f"out of capacity: a replica needs {describe_gpus(count, needs)}; this nodepool has {has.gpus} "
                f"such GPU(s){detected}; set JUPYTER_DEPLOY_FAKE_GPUS=N (or a comma-separated list of "
                "names) to test without GPUs")
    if needs.memory > has.memory:
        return f"out of capacity: a replica needs {_gib(needs.memory)} of memory; this nodepool has {_gib(has.memory)}"
    if needs.cpu_limit > has.cpus:
        return f"out of capacity: a replica's cpu_limit is {needs.cpu_limit:g} cores; this nodepool has {has.cpus:g}"
    return ""


def over_capacity(setting: str, replicas: int, count: int, needs: Needs, host: Any,
                  nodepool: dict | None = None) -> str:
    """Why ``replicas`` replicas (``setting`` says which: min_replicas, max_replicas), each with
    ``count`` GPUs and ``needs``, can never run at once on the nodepool, or "".

    >>> from jupyter_deploy.control._host_info import HostInfo
    >>> over_capacity("min_replicas", 100000, 0, Needs("", 0, 0, 0, cpu_request=1), HostInfo(2, 8 << 30))
    'min_replicas 100000 x 1 CPU = 100000 CPUs; the nodepool has 2 CPUs'
    """
    has = capacity(needs, host, nodepool)
    if count and replicas * count > has.gpus:
        return (f"{setting} {replicas} x {describe_gpus(count, needs)} = {replicas * count} GPUs; the nodepool "
                f"has {has.gpus} such GPU(s)")
    if needs.memory and replicas * needs.memory > has.memory:
        return (f"{setting} {replicas} x {_gib(needs.memory)} of memory = {_gib(replicas * needs.memory)}; the "
                f"nodepool has {_gib(has.memory)}")
    if replicas * needs.cpu > has.cpus + 1e-9:
        return (f"{setting} {replicas} x {needs.cpu:g} CPU = {replicas * needs.cpu:g} CPUs; the nodepool has "
                f"{has.cpus:g} CPUs")
    return ""


def runner_limit_args(needs: Needs) -> list[str]:
    """The runner flags that enforce a replica's limits (memory cap, CPU bound)."""
    args = []
    if needs.memory_limit:
        args += ["--memory-limit", str(int(needs.memory_limit))]
    if needs.cpu_limit:
        args += ["--cpu-limit", f"{needs.cpu_limit:g}"]
    return args


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def cores_for(limit: float) -> int:
    """Whole cores for a ``cpu_limit`` (``500m`` still gets one)."""
    return max(1, math.ceil(limit))
