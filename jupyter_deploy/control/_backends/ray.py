"""The ``ray`` backend: each replica is a Ray actor on an existing Ray cluster.

Ray places replicas (``places_replicas``): an actor asks for the version's
``num_cpus`` (what a local replica reserves: ``cpu_requests``, else ``cpu_limit``,
at least ``MIN_CPU``), ``num_gpus``,
``memory`` and ``accelerator_type`` (matched against the accelerator types the
pool's nodes report), on the nodes whose labels match the nodepool's
``node_labels`` (a Ray label selector), spread over them. The actor
(``runner._ray_actor``) runs the ordinary runner on its node, bound to the node's
IP; clients call it there directly, and the daemon checks its gRPC health there.
The version's folder travels through Ray's object store, never a shared file
system, and requirements the nodes' Python lacks become the actor's Ray
``runtime_env`` (pip).

The daemon never imports Ray: one driver process per cluster
(``_ray_agent``) does, and this module talks to it over a pipe. A driver whose
cluster goes away is ended by Ray; this backend then reports ``outage()`` (the
scheduler marks the cluster's deployments FAILED with it), tries again every
``RETRY`` seconds in the background, and once the cluster answers again the
deployments start over. Actors are named and detached in a namespace of this
daemon's home (``namespace_for``), so a restarted daemon re-adopts them
(``list_running``); what a driver finds there that no replica of ours claims
after an outage is killed.

The daemon's machine must be a node of the Ray cluster (``ray start
--address=HEAD --num-cpus=0``), as for any Ray driver, and every node needs
``jupyter_deploy`` installed in the Python that runs Ray.

Example::

    backend = RayBackend(home, "10.0.0.5:6379")
    backend.check()                       # FailedPrecondition when no Ray cluster answers there
    [n.node_id for n in backend.describe()]
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..._wire import TELEMETRY_ENV
from .._errors import FailedPrecondition
from .._host_info import Gpu, HostInfo
from .._resources import Needs, gpu_matches
from .base import Health, Node, NodepoolBackend, ReplicaHandle, ReplicaSpec, StartFailed

log = logging.getLogger("jupyter_deploy.scheduler")

AGENT_MODULE = "jupyter_deploy.control._backends._ray_agent"
#: Seconds the driver gets to import Ray and connect (``ray.init``).
CONNECT_TIMEOUT = 60.0
#: Seconds a request to the driver may take before it counts as hung (it is then ended).
REQUEST_TIMEOUT = 30.0
#: ... a start, which may first ask a node which requirements it lacks (a Ray task, once per text).
START_TIMEOUT = 90.0
#: Seconds between tries to reach a cluster that went away.
RETRY = 5.0
#: Seconds the driver keeps trying to reach a cluster's GCS before Ray ends it (Ray's default: 60).
GCS_GIVE_UP = 5
#: Seconds a health check may take.
HEALTH_TIMEOUT = 1.0
#: Seconds the node list is kept for ``describe`` and ``never_fits``.
NODES_FRESH = 2.0
#: Ray reports no GPU memory: a Ray GPU counts as having any ``accelerator_memory`` asked.
UNKNOWN_GPU_MEMORY = 1 << 60


def namespace_for(home: Path) -> str:
    """The Ray namespace of one daemon's actors: this host and home folder, hashed."""
    key = f"{socket.gethostname()}:{Path(home).resolve()}"
    return "jupyter_deploy-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def node_matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    """Whether a node with ``labels`` is in a pool with ``node_labels`` ``selector`` (all must match)."""
    return all(labels.get(k) == v for k, v in selector.items())


def type_matches(ray_type: str, patterns: tuple[str, ...]) -> bool:
    """Whether a Ray accelerator type (``T4``, ``A100-80G``: Ray's short names) is one a version asks
    for: matched as a GPU name is (``_resources.gpu_matches``), or named inside a pattern
    (``NVIDIA-T4`` asks for ``T4``).

    >>> type_matches("T4", ("NVIDIA-T4",)), type_matches("A10G", ("NVIDIA-T4",))
    (True, False)
    """
    def words(text: str) -> str:
        return " " + " ".join(text.lower().replace("-", " ").replace("_", " ").split()) + " "

    return gpu_matches(ray_type, patterns) or any(words(ray_type) in words(p) for p in patterns)


def node_host(node: Node) -> HostInfo:
    """A Ray node as a HostInfo: what a nodepool's ``instance_type`` defaults to."""
    return HostInfo(cpus=node.cpus, memory=node.memory,
                    gpus=[Gpu(i, name, UNKNOWN_GPU_MEMORY) for i, name in enumerate(node.gpus)])


class _Unreachable(Exception):
    """The driver is gone or does not answer; the message says why."""


class _Driver:
    """The driver process of one cluster and the pipe to it (requests are answered in turn)."""

    def __init__(self, address: str, namespace: str, log_path: Path):
        to_agent_r, to_agent_w = os.pipe()
        from_agent_r, from_agent_w = os.pipe()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RAY_gcs_rpc_server_reconnect_timeout_s": str(GCS_GIVE_UP),
               "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", AGENT_MODULE, address, namespace, str(to_agent_r), str(from_agent_w)],
                pass_fds=(to_agent_r, from_agent_w), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        os.close(to_agent_r)
        os.close(from_agent_w)
        self._send = Connection(to_agent_w, readable=False)
        self._recv = Connection(from_agent_r, writable=False)
        self._lock = threading.Lock()
        self.log_path = log_path
        self.hello = self._answer(CONNECT_TIMEOUT)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def call(self, op: str, timeout: float = REQUEST_TIMEOUT, **kwargs: Any) -> Any:
        with self._lock:
            try:
                self._send.send((op, kwargs))
            except OSError as e:
                self.close()
                raise _Unreachable(f"its Ray driver is gone ({e})") from None
            return self._answer(timeout)

    def _answer(self, timeout: float) -> Any:
        try:
            if not self._recv.poll(timeout):
                self.close()
                raise _Unreachable(f"its Ray driver did not answer within {timeout:g} s")
            status, value = self._recv.recv()
        except (EOFError, OSError):
            self.close()
            raise _Unreachable(self._last_words()) from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def _last_words(self) -> str:
        """Why the driver ended: the last line it printed, else its exit."""
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        said = next((ln.strip() for ln in reversed(lines) if "GCS" in ln or "rror" in ln), "")
        return said[-300:] or f"its Ray driver ended (exit code {self.popen.poll()})"

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for conn in (self._send, self._recv):
            try:
                conn.close()
            except OSError:
                pass


@dataclass
class RayHandle(ReplicaHandle):
    """A replica's actor, known by its replica id to the driver of ``generation``."""

    generation: int = 0
    meta: dict = field(default_factory=dict)


class RayBackend(NodepoolBackend):
    """Runner replicas as Ray actors on the Ray cluster at ``address`` (see the module docstring).

    Args:
        home: the control plane's home folder (the namespace, the driver's log under ``logs/``).
        address: the cluster's GCS ``HOST:PORT``; "" reads ``RAY_ADDRESS``.
    """

    provider = "ray"
    places_replicas = True

    def __init__(self, home: Path, address: str = ""):
        self.home = Path(home)
        self.ray_address = address or os.environ.get("RAY_ADDRESS", "")
        self.namespace = namespace_for(self.home)
        self._driver: _Driver | None = None
        self._generation = 0
        self._down = ""                 # why the cluster cannot be reached, "" while it can
        self._retry_at = 0.0
        self._reconnecting: threading.Thread | None = None
        self._known: set[str] = set()   # replicas started or re-adopted, not yet stopped
        self._lock = threading.RLock()  # the scheduler's thread, and RPCs (describe, never_fits)
        self._connecting = threading.Lock()
        self._nodes: tuple[float, list[dict]] = (0.0, [])
        self._health: dict[str, tuple[str, grpc.Channel, Any]] = {}

    # ------------------------------------------------------------ the driver

    def _connect(self, adopting: bool = False) -> _Driver:
        """The live driver, started (and connected) when there is none; _Unreachable when it cannot be.

        Blocks while it connects (seconds; ``CONNECT_TIMEOUT`` at most), without holding the lock
        that ``outage`` and the handles' checks take.
        """
        with self._lock:
            if self._driver is not None and self._driver.alive():
                return self._driver
            if self._driver is not None:  # it ended: Ray ends a driver whose cluster went away
                self._lost(self._driver._last_words())
        with self._connecting:  # one connect at a time
            with self._lock:
                if self._driver is not None and self._driver.alive():
                    return self._driver
            try:
                driver = self._start_driver()
            except _Unreachable as e:
                with self._lock:
                    self._down = f"no Ray cluster answers at {self.ray_address}: {e}"
                    self._retry_at = time.monotonic() + RETRY
                raise
            with self._lock:
                self._driver, self._generation = driver, self._generation + 1
                if self._down:
                    log.warning("the Ray cluster at %s answers again", self.ray_address)
                self._down = ""
                keep = sorted(self._known)
            if not adopting:
                # Actors a previous driver left that no replica of ours claims (their replicas
                # were written off when the cluster went away): nothing would ever stop them.
                try:
                    driver.call("forget_others", keep=keep)
                except (RuntimeError, _Unreachable) as e:
                    log.warning("Ray cluster at %s: cannot clean up old actors: %s", self.ray_address, e)
            return driver

    def _probe(self) -> None:
        """_Unreachable when there is no address, or nothing listens there (a second at most)."""
        if not self.ray_address:
            raise _Unreachable("no ray_address in the compute cluster's config and no RAY_ADDRESS in the "
                               "daemon's environment")
        host, _, port = self.ray_address.rpartition(":")
        try:  # ray.init waits minutes for a GCS that is not there: knock on the port first
            socket.create_connection((host, int(port)), timeout=1).close()
        except (OSError, ValueError) as e:
            raise _Unreachable(f"nothing answers there ({e})") from None

    def _start_driver(self) -> _Driver:
        self._probe()
        try:
            return _Driver(self.ray_address, self.namespace, self.home / "logs" / f"ray-{self.namespace}.log")
        except RuntimeError as e:  # ray.init refused
            raise _Unreachable(str(e)) from None

    def _lost(self, why: str) -> None:
        with self._lock:
            if self._driver is not None:
                self._driver.close()
            self._driver = None
            self._down = f"the Ray cluster at {self.ray_address} went away" + (f" ({why})" if why else "")
            self._retry_at = time.monotonic() + RETRY
            log.error("%s", self._down)

    def _call(self, op: str, timeout: float = REQUEST_TIMEOUT, **kwargs: Any) -> Any:
        with self._lock:
            down = self._down if self._driver is None else ""
        if down:  # never block a caller on a cluster that is away: try again in the background
            self._reconnect_later()
            raise _Unreachable(down)
        driver = self._connect()
        try:
            return driver.call(op, timeout, **kwargs)
        except _Unreachable as e:
            self._lost(str(e))
            raise

    def _reconnect_later(self) -> None:
        """Try the cluster again in the background (``ray.init`` can take long)."""
        with self._lock:
            if self._reconnecting is not None and self._reconnecting.is_alive():
                return
            if time.monotonic() < self._retry_at:
                return

            def attempt() -> None:
                try:
                    self._connect()
                except _Unreachable:
                    pass  # _connect noted why and when to try again

            self._reconnecting = threading.Thread(target=attempt, name="ray-reconnect", daemon=True)
            self._reconnecting.start()

    # ------------------------------------------------------------ the cluster

    def check(self) -> None:
        try:
            with self._lock:
                self._retry_at = 0.0
            self._connect()
        except _Unreachable as e:
            raise FailedPrecondition(f"no Ray cluster answers at {self.ray_address or '(no address)'}: {e}") from None

    def outage(self) -> str:
        with self._lock:
            if self._driver is not None and self._driver.alive():
                return ""
            if self._driver is not None:
                self._lost(self._driver._last_words())
            down = self._down
        if not down:  # never connected yet (the first start connects): only what is plainly wrong
            try:
                self._probe()
            except _Unreachable as e:
                with self._lock:
                    self._down = down = f"no Ray cluster answers at {self.ray_address}: {e}"
                    self._retry_at = time.monotonic() + RETRY
            return down
        self._reconnect_later()
        return down

    def nodes(self, fresh: bool = False) -> list[dict]:
        """The cluster's live nodes as the driver reports them (kept ``NODES_FRESH`` seconds)."""
        with self._lock:
            at, nodes = self._nodes
            if fresh or time.monotonic() - at > NODES_FRESH:
                try:
                    nodes = self._call("nodes")
                except (_Unreachable, RuntimeError) as e:
                    raise FailedPrecondition(f"no Ray cluster answers at {self.ray_address}: {e}") from None
                self._nodes = (time.monotonic(), nodes)
            return nodes

    def describe(self) -> list[Node]:
        return [_node(n) for n in self.nodes()]

    def never_fits(self, pool: str, nodepool: dict, count: int, needs: Needs) -> str:
        """Why one replica can never fit any node of the pool, e.g. "needs 2 GPUs, the largest node
        of nodepool gpu has 1"; "" when some node can hold it (now or once others leave)."""
        selector = nodepool.get("node_labels") or {}
        nodes = [n for n in self.nodes(fresh=True) if node_matches(n["labels"], selector)]
        where = f"nodepool {pool}"
        if not nodes:
            labels = ", ".join(f"{k}={v}" for k, v in selector.items())
            return f"no node of the Ray cluster has the labels of {where} ({labels})"
        request = self.request(count, needs, nodepool, nodes)
        if "why" in request:
            return request["why"]
        res = [n["resources"] for n in nodes]
        checks = [("num_gpus", "GPU", lambda v: f"{v:g} GPU(s)"),
                  ("num_cpus", "CPU", lambda v: f"{v:g} CPU(s)"),
                  ("memory", "memory", lambda v: f"{v / 2**30:.1f} GiB of memory")]
        for key, resource, say in checks:
            asked = request.get(key) or 0
            if asked and not any(r.get(resource, 0) >= asked for r in res):
                largest = max(r.get(resource, 0) for r in res)
                kind = f" of type {request['accelerator_type']}" if key == "num_gpus" and \
                    request.get("accelerator_type") else ""
                return f"needs {say(asked)}{kind}, the largest node of {where} has {say(largest)}"
        if not any(all(r.get(res_key, 0) >= (request.get(key) or 0) for key, res_key, _ in checks) for r in res):
            return f"needs {_asks(request)} on one node; no node of {where} has all of it"
        return ""

    def request(self, count: int, needs: Needs, nodepool: dict, nodes: list[dict] | None = None) -> dict:
        """The actor options one replica asks Ray for (``{"why": ...}`` when no GPU type of the pool matches)."""
        request: dict[str, Any] = {"num_cpus": needs.cpu, "num_gpus": count}
        if needs.memory:
            request["memory"] = int(needs.memory)
        selector = nodepool.get("node_labels") or {}
        if selector:
            request["label_selector"] = dict(selector)
        if count and needs.accelerator_types:
            nodes = nodes if nodes is not None else [n for n in self.nodes() if node_matches(n["labels"], selector)]
            types = sorted({k.split(":", 1)[1] for n in nodes for k in n["resources"]
                            if k.startswith("accelerator_type:")})
            matching = [t for t in types if type_matches(t, needs.accelerator_types)]
            if not matching:
                have = ", ".join(types) or "none reported"
                return {"why": f"needs GPUs of type {' or '.join(needs.accelerator_types)}; the nodes of the "
                               f"pool have {have}"}
            # The type with the most GPUs on one node: the likeliest to hold the replica.
            matching.sort(key=lambda t: -max(n["resources"].get("GPU", 0) for n in nodes
                                              if f"accelerator_type:{t}" in n["resources"]))
            request["accelerator_type"] = matching[0]
        return request

    # ------------------------------------------------------------ replicas

    def start(self, spec: ReplicaSpec) -> RayHandle:
        pool = spec.nodepool
        try:
            request = self.request(spec.resources.num_accelerators, spec.resources, pool)
        except FailedPrecondition as e:
            raise StartFailed(f"a start failure ({e.message})") from None
        if "why" in request:
            raise StartFailed(f"a start failure ({request['why']})")
        meta = {"replica_id": spec.replica_id, "namespace": self.namespace, "version_id": spec.version_id,
                "user_id": spec.user_id, "deployment_id": spec.deployment_id,
                "telemetry": spec.env.get(TELEMETRY_ENV, ""), "log": str(spec.log.path),
                "log_max_bytes": spec.log.max_bytes, "request": request, "pool": spec.nodepool_id}
        requirements = ""
        req_file = Path(spec.model_path) / "requirements.txt"
        if req_file.is_file():
            requirements = req_file.read_text()
        options = {k: v for k, v in request.items() if k != "label_selector"}
        if request.get("label_selector"):
            options["label_selector"] = request["label_selector"]
        options["scheduling_strategy"] = "SPREAD"  # replicas of a deployment on different nodes where they can
        with spec.log.open() as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} replica {spec.replica_id} of version "
                      f"{spec.version_id} starting on the Ray cluster at {self.ray_address} ({_asks(request)}"
                      f"{', labels ' + str(request['label_selector']) if request.get('label_selector') else ''})"
                      f" ---\n".encode())
            try:
                note = self._call("start", timeout=START_TIMEOUT, rid=spec.replica_id, meta=meta,
                                  model_path=str(spec.model_path), args=list(spec.args), env=dict(spec.env),
                                  options=options, requirements=requirements)
            except _Unreachable as e:
                out.write(f"jupyter_deploy scheduler: no Ray cluster answers at {self.ray_address}: {e}\n".encode())
                raise StartFailed(f"a start failure (no Ray cluster answers at {self.ray_address}: {e})") from None
            except RuntimeError as e:
                out.write(f"jupyter_deploy scheduler: Ray refused the replica: {e}\n".encode())
                raise StartFailed(f"a start failure (Ray: {e})") from None
            if note:
                out.write(f"jupyter_deploy scheduler: {note}\n".encode())
        self._known.add(spec.replica_id)
        return RayHandle(spec.replica_id, None, self._generation, meta)

    def _status(self, handle: RayHandle) -> dict:
        with self._lock:
            gone = self._driver is None or not self._driver.alive() or handle.generation != self._generation
        if gone:
            self.outage()
            return {"ended": self._down or f"the Ray cluster at {self.ray_address} went away", "address": None,
                    "pending": ""}
        try:
            return self._call("status", rid=handle.replica_id)
        except (_Unreachable, RuntimeError) as e:
            return {"ended": f"the Ray cluster at {self.ray_address} went away ({e})", "address": None, "pending": ""}

    def poll(self, handle: RayHandle) -> str | None:
        return self._status(handle)["ended"]

    def address(self, handle: RayHandle) -> str | None:
        return self._status(handle)["address"]

    def waiting(self, handle: RayHandle) -> str:
        return self._status(handle)["pending"] or ""

    def health(self, handle: RayHandle) -> Health:
        address = self.address(handle)
        if address is None:
            return Health.SILENT
        rid = handle.replica_id
        if rid not in self._health or self._health[rid][0] != address:
            self._close_health(rid)
            channel = grpc.insecure_channel(address)
            self._health[rid] = (address, channel, health_pb2_grpc.HealthStub(channel))
        try:
            status = self._health[rid][2].Check(health_pb2.HealthCheckRequest(service=""),
                                                timeout=HEALTH_TIMEOUT).status
        except grpc.RpcError:
            return Health.SILENT
        return Health.SERVING if status == health_pb2.HealthCheckResponse.SERVING else Health.LOADING

    def drain(self, handle: RayHandle, grace: float) -> None:
        if handle.generation == self._generation:
            try:
                self._call("drain", rid=handle.replica_id)
            except (_Unreachable, RuntimeError):
                pass  # the cluster went away: there is nothing left to drain

    def stop(self, handle: RayHandle) -> None:
        self._known.discard(handle.replica_id)
        self._close_health(handle.replica_id)
        if handle.generation == self._generation and self._driver is not None and self._driver.alive():
            try:
                self._call("stop", rid=handle.replica_id)
            except (_Unreachable, RuntimeError):
                pass  # gone with its cluster; a later driver kills what is left (forget_others)

    def list_running(self) -> list[RayHandle]:
        try:
            driver = self._connect(adopting=True)
            found = driver.call("list", timeout=max(REQUEST_TIMEOUT, 60.0))
        except (_Unreachable, RuntimeError) as e:
            log.warning("Ray cluster at %s: cannot list running replicas (%s); none re-adopted", self.ray_address, e)
            return []
        handles = [RayHandle(info["replica_id"], None, self._generation, info) for info in found]
        self._known.update(h.replica_id for h in handles)
        return handles

    def close(self) -> None:
        for rid in list(self._health):
            self._close_health(rid)
        with self._lock:
            if self._driver is not None:
                self._driver.close()  # the actors are detached: they keep serving
                self._driver = None

    def _close_health(self, rid: str) -> None:
        entry = self._health.pop(rid, None)
        if entry is not None:
            entry[1].close()


def _node(n: dict) -> Node:
    res = n["resources"]
    types = [k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")]
    gpus = [types[0] if types else "GPU"] * int(res.get("GPU", 0))
    return Node(n["node_id"], dict(n["labels"]), float(res.get("CPU", 0)), int(res.get("memory", 0)), gpus)


def _asks(request: dict) -> str:
    parts = [f"{request.get('num_cpus', 0):g} CPU"]
    if request.get("num_gpus"):
        parts.append(f"{request['num_gpus']:g} GPU" + (f" of type {request['accelerator_type']}"
                                                     if request.get("accelerator_type") else ""))
    if request.get("memory"):
        parts.append(f"{request['memory'] / 2**30:.1f} GiB memory")
    return ", ".join(parts)

