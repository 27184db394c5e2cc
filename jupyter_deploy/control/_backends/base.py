"""The contract between the scheduler and a nodepool backend.

The scheduler decides (how many replicas, of which version and settings, on which
GPUs, when to restart, roll out, roll back and route); a backend only carries out,
on whatever it runs replicas on: processes on this host (``local``), actors on a
Ray cluster, pods. Every replica is one runner (``python -m jupyter_deploy.runner``)
serving the ``Runner`` gRPC service and ``grpc.health.v1`` at its address.

A backend is driven from the scheduler's one thread, so its methods need no locks
of their own; each should return quickly (the scheduler runs a pass every 50 ms
while something changes). The life of a replica, as the scheduler drives it::

    handle = backend.start(spec)          # its row is written first, so a restart finds it
    backend.poll(handle)                  # every pass: None while it runs, else how it ended
    backend.address(handle)               # None until it listens
    backend.health(handle)                # until SERVING; then it gets calls
    backend.drain(handle, grace)          # rollout, scale-down or stop: finish and exit
    backend.stop(handle)                  # once grace is over, or once it is gone: always last

A backend whose ``can_reload`` is true also carries out hot reloads (``reload``: a new
version's code swapped into a serving replica, from a thread of the scheduler's own).

After a daemon restart, ``list_running()`` hands back a handle for each replica the
previous daemon left; the scheduler keeps those its store still wants that answer
health checks, and ``stop()``s the rest.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._replica_logs import LogFile
from .._resources import Needs


@dataclass(frozen=True)
class RunAs:
    """The OS user a replica's runner runs as, where the daemon sandboxes runners (``_sandbox``).

    Attributes:
        uid, gid: its user and group ids (no ``/etc/passwd`` entry needed).
        groups: its supplementary groups (only the runners' group, which lets it pass through
            the folders above the Python installation and the home).
        home: its ``$HOME`` and working folder (its own).
        run_dir: where its port file goes (its own).
        name: its ``$USER`` and ``$LOGNAME`` (the uid has no name on the host).
    """

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: Path
    run_dir: Path
    name: str


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a backend needs to start one replica.

    Attributes:
        replica_id: the replica's row id (12 hex digits); a backend tags what it starts
            with it, so that ``list_running`` can name the replica after a daemon restart.
        user_id, deployment_id: the deployment it serves.
        version_id: the model version it loads.
        model_path: the version's folder on this host (``config.yaml``, ``1/model.py``).
        python: the interpreter the version was uploaded with, or the one the deployment
            names; a backend that cannot use it says so in the log and uses its own.
        args: the runner's flags after ``--model-path``, ``--address`` and ``--port-file``
            (batcher, transformer, memory and CPU caps, ``--run-test``).
        env: the runner's own variables (``MODEL_PATH``, ``MODEL_VERSION``, ``DEPLOYMENT_ID``, the
            route tokens' verification key, ``CUDA_VISIBLE_DEVICES``, the deployment's secrets, the
            telemetry and environments folders); a backend adds only what a process needs to run
            (``PATH``, locale, caches: ``LocalBackend``), never the rest of the daemon's environment.
        gpus: the GPU indices the scheduler reserved for it (also in ``env`` as
            ``CUDA_VISIBLE_DEVICES``); empty for a CPU replica.
        resources: what one replica asks for (CPUs, memory, GPU type; ``num_accelerators`` as
            the deployment sets it), for a backend that places replicas itself.
        log: where the replica's stdout and stderr go (appended, rotated by ``LogFile``).
        run_as: the OS user to run it as; None: the daemon's own.
        nodepool_id, nodepool: the nodepool it runs on and its config (``node_labels``), for a
            backend that places replicas itself.
    """

    replica_id: str
    user_id: str
    deployment_id: str
    version_id: str
    model_path: Path
    python: str
    args: tuple[str, ...]
    env: dict[str, str]
    gpus: tuple[int, ...]
    resources: Needs
    log: LogFile
    run_as: RunAs | None = None
    nodepool_id: str = ""
    nodepool: dict = field(default_factory=dict)


@dataclass
class ReplicaHandle:
    """A started (or re-adopted) replica, as its backend knows it; a backend subclasses it
    to keep what it needs (a process, an actor).

    Attributes:
        replica_id: the ``ReplicaSpec.replica_id`` it was started with.
        pid: its process id on this host, recorded in the replica's row; None where the
            replica is not a process here (a Ray actor).
    """

    replica_id: str
    pid: int | None = None


class Health(enum.Enum):
    """What a health check of a live replica found (``poll`` reports one that is gone)."""

    #: Its gRPC health service answers SERVING: it can take calls.
    SERVING = "serving"
    #: It answers, but not SERVING yet (loading weights, running ``test()``).
    LOADING = "loading"
    #: No answer: no address yet, or it does not listen (still starting, or hung).
    SILENT = "silent"


@dataclass(frozen=True)
class Node:
    """One node a backend can place replicas on (for ``describe()``).

    Attributes:
        node_id: the node's name (a host name, a Ray node id).
        labels: what a nodepool can select it by.
        cpus: CPU cores.
        memory: memory in bytes.
        gpus: its GPUs' names, one entry per GPU.
    """

    node_id: str
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    memory: int = 0
    gpus: list[str] = field(default_factory=list)


class ReloadUnreachable(Exception):
    """``reload`` could not ask the replica at all (it is gone, or does not answer); the message says why."""


class StartFailed(Exception):
    """``start`` could not start the replica at all (the message says why; it is in the log too).

    The scheduler counts it as a crash: it restarts with backoff, then marks the deployment FAILED.
    """


class NodepoolBackend(ABC):
    """Runs runner replicas somewhere; see the module docstring for the life of a replica."""

    #: The ``cloud_provider`` of the compute clusters this backend serves.
    provider: str = ""
    #: Whether the backend places replicas itself (Ray): the scheduler then reserves none of this
    #: host's GPUs or memory for them, ``never_fits`` says what can never run, and ``waiting``
    #: why a started replica is not placed yet.
    places_replicas: bool = False

    @abstractmethod
    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        """Start one replica as ``spec`` says and return at once (it loads in the background).

        Raises StartFailed when it cannot start at all (no interpreter, no room, no cluster).
        """

    @abstractmethod
    def poll(self, handle: ReplicaHandle) -> str | None:
        """None while the replica runs; else how it ended, in words for a deployment's reason
        ("exit code 3", "signal SIGKILL", "out of memory (...)").

        Cheap: the scheduler calls it every pass for every replica.
        """

    @abstractmethod
    def address(self, handle: ReplicaHandle) -> str | None:
        """``host:port`` of the replica's gRPC server, reachable from clients; None until it listens."""

    def ipc_address(self, handle: ReplicaHandle) -> str:
        """The replica's same-host ipc endpoint (``runner._ipc``) for callers on its host; "" where
        it has none (the default: backends whose replicas are on other hosts)."""
        return ""

    @abstractmethod
    def health(self, handle: ReplicaHandle) -> Health:
        """Ask the replica's ``grpc.health.v1`` service (at most about a second).

        Called while a replica starts, and once for each replica re-adopted after a restart.
        """

    @abstractmethod
    def drain(self, handle: ReplicaHandle, grace: float) -> None:
        """Ask the replica to finish the calls it has and exit (the runner does on SIGTERM).

        The scheduler no longer routes to it; it calls ``stop`` once ``grace`` seconds have
        passed, or as soon as ``poll`` says it ended. Called once per replica.
        """

    @abstractmethod
    def stop(self, handle: ReplicaHandle) -> None:
        """End the replica now, forcefully if it still runs, and free what the backend holds
        for it (connections, port files). Called last for every handle, also for one that has
        already ended; calling it again does nothing.
        """

    @abstractmethod
    def list_running(self) -> list[ReplicaHandle]:
        """A handle for every replica this backend runs, started by this daemon or by an earlier one.

        Called when the scheduler starts, to re-adopt what a daemon that died left running.
        """

    def describe(self) -> list[Node]:
        """The nodes replicas can be placed on ([] when the backend cannot tell cheaply)."""
        return []

    def check(self) -> None:
        """Raise FailedPrecondition, saying why, when the backend cannot reach where it runs
        replicas (a cluster that does not answer). Called when a compute cluster is created."""

    def outage(self) -> str:
        """Why the backend cannot reach its replicas now (its cluster went away), or "".

        Cheap (the scheduler asks every pass); a backend that is down tries again on its own.
        """
        return ""

    def never_fits(self, pool: str, nodepool: dict, count: int, needs: Needs) -> str:
        """(``places_replicas``) Why one replica with ``count`` GPUs can never fit nodepool ``pool``
        (its config ``nodepool``), or "". FailedPrecondition when the backend cannot tell now."""
        return ""

    def waiting(self, handle: ReplicaHandle) -> str:
        """(``places_replicas``) Why a started replica is not placed yet, or ""."""
        return ""

    #: Whether ``reload`` works; where it does not, a new version always rolls out new replicas.
    can_reload: bool = False

    def reload(self, handle: ReplicaHandle, model_path: Path, version_id: str, *, run_test: bool, token: str,
               timeout: float) -> Any:
        """Ask a serving replica to swap in the code of ``model_path`` (its copy of the version
        ``version_id``), keeping its loaded state: the runner's ``Reload``, carrying ``token`` (a
        route token with the claim ``"o": "reload"``). Returns the runner's ``ReloadResponse``
        (its ``error`` set when the runner refused or the new code failed).

        Called from a thread other than the scheduler's (a reload may run ``test()``, for up
        to ``timeout`` seconds), so it must not touch what the other methods keep. Raises
        ReloadUnreachable when the replica cannot be asked.
        """
        raise ReloadUnreachable(f"the {self.provider or 'this'} backend cannot hot reload")

    def close(self) -> None:
        """Let go of connections; replicas keep running (a later daemon re-adopts them)."""
