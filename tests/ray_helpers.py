"""A real multi-node Ray cluster on this machine, for tests and the bench.

``ray start --head`` plus ``ray start --address`` for each other node, all on
loopback, with the dashboard off, small object stores, token auth off (a
``~/.ray/auth_token`` would make the head ask for a token ``ray start --address``
does not send), fake GPUs as ``--num-gpus`` and node labels. Every process the
cluster runs is found by its session folder (under this cluster's own
``--temp-dir``) and killed by pid at the end: nothing else on the machine is touched.

Example::

    with RayCluster(tmp) as cluster:
        cluster.start_head(num_cpus=4, labels={"pool": "cpu"})
        cluster.add_node(num_cpus=4, num_gpus=2, labels={"pool": "gpu"})
        cluster.address   # '192.0.2.2:41234': a compute cluster's ray_address
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The environment every Ray process of a test cluster gets (and the daemon that drives it).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
OBJECT_STORE = 80 * 10**6
#: Tries of one ``ray start``: a raylet on a busy 2-core machine can miss its 30 s to register.
TRIES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str] | None:
    exe = Path(sys.executable).with_name("ray")
    if exe.exists():
        return [str(exe)]
    return shutil.which("ray") and [shutil.which("ray")]


class RayCluster:
    """A Ray cluster of processes on this machine, in a temp folder of its own."""

    def __init__(self, root: Path | None = None):
        # Short, under /tmp: Ray's socket paths inside it must stay under 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="jdray-", dir="/tmp"))
        self.address = ""
        self.port = 0
        self.env = {**os.environ, **RAY_ENV}

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, args: list[str], head: bool = False) -> str:
        said = []
        for _ in range(TRIES):
            before = set(self.pids()) | set(self.workers())
            out = subprocess.run([*_ray_cli(), "start", *args], capture_output=True, text=True, env=self.env,
                                 timeout=180)
            if out.returncode == 0:
                return out.stdout + out.stderr
            said.append((out.stdout + out.stderr)[-1500:])
            # What the failed try left running would make the next one fail too.
            self._kill([p for p in set(self.pids()) | set(self.workers()) if head or p not in before])
        raise RuntimeError(f"ray start {' '.join(args)} failed {TRIES} times:\n" + "\n---\n".join(said))

    def start_head(self, num_cpus: float = 2, num_gpus: int = 0, labels: dict | None = None,
                   resources: dict | None = None, port: int | None = None) -> str:
        """Start the head node (its GCS at ``self.address``); the address."""
        self.port = port or self.port or free_port()
        self.temp.mkdir(parents=True, exist_ok=True)
        out = self._start(["--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                           "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(self.temp),
                           "--ray-client-server-port", str(free_port()),
                           "--dashboard-agent-listen-port", str(free_port()),
                           *self._node_args(num_cpus, num_gpus, labels, resources)], head=True)
        # Ray may report this machine's outward IP even for 127.0.0.1: take the address it printed.
        address = next((line.split("--address=")[1].strip().strip("'\"") for line in out.splitlines()
                        if "ray start --address=" in line), f"127.0.0.1:{self.port}")
        self.address = address
        return address

    def add_node(self, num_cpus: float = 2, num_gpus: int = 0, labels: dict | None = None,
                 resources: dict | None = None) -> None:
        """Start one more node that joins the head."""
        self._start(["--address", self.address, "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                     "--dashboard-agent-listen-port", str(free_port()),
                     *self._node_args(num_cpus, num_gpus, labels, resources)])

    @staticmethod
    def _node_args(num_cpus: float, num_gpus: int, labels: dict | None, resources: dict | None) -> list[str]:
        args = ["--num-cpus", f"{num_cpus:g}", "--num-gpus", str(num_gpus),
                "--object-store-memory", str(OBJECT_STORE)]
        if labels:
            args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
        if resources:
            args += ["--resources", json.dumps(resources)]
        return args

    def pids(self, what: str = "") -> list[int]:
        """Processes of this cluster (their command line names its temp folder), ``what`` in it."""
        out = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            ours = str(self.temp) in cmdline or (self.address and f"--address={self.address}" in cmdline)
            if ours and what in cmdline:
                out.append(int(entry.name))
        return out

    def workers(self) -> list[int]:
        """Ray worker processes (``ray::...``): their command lines are rewritten, so found by parent."""
        raylets = set(self.pids("raylet"))
        out = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            if _parent(int(entry.name)) in raylets:
                out.append(int(entry.name))
        return out

    def kill_node(self, node_id: str) -> None:
        """SIGKILL one node: its raylet and the workers it started (the node leaves the cluster)."""
        [raylet] = self.pids(f"--node_id={node_id}")
        children = [pid for pid in self.workers() if _parent(pid) == raylet]
        self._kill([*children, raylet])

    def stop(self) -> None:
        """Kill every process of this cluster, by pid (workers first), and wait until they are gone."""
        for _ in range(3):
            pids = self.workers() + self.pids()
            if not pids:
                break
            self._kill(pids)
        shutil.rmtree(self.temp, ignore_errors=True)

    @staticmethod
    def _kill(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def _parent(pid: int) -> int:
    """A process's parent pid (0 when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0
