"""The ``local`` backend: each replica is a runner process on this host.

A replica is ``<python> -m jupyter_deploy.runner --port-file home/run/<replica id>.port
...``, started in its own session (signals sent to a kernel's process group never
reach it) with its output appended to the deployment's log. The runner writes the
port it bound to into its port file; its address is ``127.0.0.1:<port>``.

The port file's path in the command line names the replica, so a daemon restarted
after SIGKILL finds every runner a previous one left by their command lines
(``/proc``, or ``ps`` where there is none) and hands them back from ``list_running``.

Example::

    backend = LocalBackend(home, detect())
    handle = backend.start(spec)
    while backend.health(handle) is not Health.SERVING:
        time.sleep(0.1)
    backend.address(handle)  # '127.0.0.1:40123'
    backend.drain(handle, grace=30)
    backend.stop(handle)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .._host_info import HostInfo
from .base import Health, Node, NodepoolBackend, ReplicaHandle, ReplicaSpec, StartFailed

log = logging.getLogger("jupyter_deploy.scheduler")

RUNNER_MODULE = "jupyter_deploy.runner"
#: The runner's exit code when its resident memory went over its cpu_memory cap (runner._limits).
EXIT_OUT_OF_MEMORY = 5
#: Seconds a health check may take.
HEALTH_TIMEOUT = 1.0
#: Seconds ``stop`` waits for a killed runner of ours to be reaped.
REAP_TIMEOUT = 5.0


@dataclass
class LocalHandle(ReplicaHandle):
    """A runner process: one this backend started (``popen``), or one a previous daemon left."""

    port_file: Path = Path()
    popen: subprocess.Popen | None = None


class LocalBackend(NodepoolBackend):
    """Runner replicas as processes on this host.

    Args:
        home: the control plane's home folder (port files under ``run/``).
        host: this host's capacity, for ``describe()``.
    """

    provider = "local"

    def __init__(self, home: Path, host: HostInfo):
        self.host = host
        self.run_dir = Path(home) / "run"
        self._marker_re = re.compile(re.escape(f"{self.run_dir}{os.sep}") + r"([0-9a-f]{12})\.port")
        self._health: dict[str, tuple[grpc.Channel, Any]] = {}  # replica id -> channel, stub

    def start(self, spec: ReplicaSpec) -> LocalHandle:
        port_file = self._port_file(spec.replica_id)
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.unlink(missing_ok=True)
        notes = []
        python = shutil.which(spec.python)
        if python is None:
            notes.append(f"the interpreter {spec.python} is missing or not executable; using the daemon's "
                         f"{sys.executable}")
            log.warning("deployment %s/%s: %s", spec.user_id, spec.deployment_id, notes[-1])
            python = sys.executable
        cmd = [python, "-m", RUNNER_MODULE, "--model-path", str(spec.model_path), "--address", "127.0.0.1:0",
               "--port-file", str(port_file), *spec.args]
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        with spec.log.open() as out:
            for note in notes:
                out.write(f"jupyter_deploy scheduler: {note}\n".encode())
            gpus = ",".join(map(str, spec.gpus)) or "none"
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} replica {spec.replica_id} of version "
                      f"{spec.version_id} starting (GPUs: {gpus}) ---\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
            except OSError as e:
                out.write(f"jupyter_deploy scheduler: cannot start {python}: {e}\n".encode())
                raise StartFailed(f"a start failure ({e})") from e
        return LocalHandle(spec.replica_id, popen.pid, port_file, popen)

    def poll(self, handle: LocalHandle) -> str | None:
        if handle.popen is not None:
            code = handle.popen.poll()
            return None if code is None else describe_exit(code)
        # Not our child, so no exit status: gone (or a zombie, whose cmdline is empty) is all we learn.
        if str(handle.port_file) in _cmdline(handle.pid):
            return None
        return "exit code unknown (re-adopted after a daemon restart)"

    def address(self, handle: LocalHandle) -> str | None:
        port = _read_port(handle.port_file)
        return None if port is None else f"127.0.0.1:{port}"

    def health(self, handle: LocalHandle) -> Health:
        rid = handle.replica_id
        if rid not in self._health:
            address = self.address(handle)
            if address is None:
                return Health.SILENT
            channel = grpc.insecure_channel(address)
            self._health[rid] = (channel, health_pb2_grpc.HealthStub(channel))
        try:
            status = self._health[rid][1].Check(health_pb2.HealthCheckRequest(service=""),
                                                timeout=HEALTH_TIMEOUT).status
        except grpc.RpcError:
            return Health.SILENT
        return Health.SERVING if status == health_pb2.HealthCheckResponse.SERVING else Health.LOADING

    def drain(self, handle: LocalHandle, grace: float) -> None:
        # The runner stops taking calls on SIGTERM and exits once those in flight are done;
        # the scheduler stops it after ``grace``.
        self._signal(handle, signal.SIGTERM)

    def stop(self, handle: LocalHandle) -> None:
        self._signal(handle, signal.SIGKILL)
        if handle.popen is not None:
            try:
                handle.popen.wait(REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("replica %s (pid %d) outlived SIGKILL by %g s", handle.replica_id, handle.pid,
                            REAP_TIMEOUT)
        if handle.replica_id in self._health:
            self._health.pop(handle.replica_id)[0].close()
        handle.port_file.unlink(missing_ok=True)

    def list_running(self) -> list[LocalHandle]:
        """Every runner process whose command line names a port file under ``home/run/``.

        Port files of runners that no longer run are removed on the way.
        """
        found = {}
        for pid, cmdline in _processes():
            match = self._marker_re.search(cmdline)
            if match and RUNNER_MODULE in cmdline:
                found[match.group(1)] = LocalHandle(match.group(1), pid, self._port_file(match.group(1)))
        for path in self.run_dir.glob("*.port"):
            if path.stem not in found:
                path.unlink(missing_ok=True)
        return list(found.values())

    def describe(self) -> list[Node]:
        """This host, as one node."""
        gpus = [g.name for g in self.host.gpus]
        return [Node(socket.gethostname(), {}, self.host.cpus, self.host.memory, gpus)]

    def close(self) -> None:
        for channel, _ in self._health.values():
            channel.close()
        self._health.clear()

    def _port_file(self, rid: str) -> Path:
        return self.run_dir / f"{rid}.port"

    def _signal(self, handle: LocalHandle, sig: int) -> None:
        if self.poll(handle) is not None:
            return  # its pid may already belong to another process
        try:
            # The runner leads its own session, so the group also reaches what the model started.
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass


def describe_exit(code: int) -> str:
    """How a runner that exited with ``code`` (negative: killed by that signal) ended, in words."""
    if code == EXIT_OUT_OF_MEMORY:
        return "out of memory (its resident memory went over inference_compute_info.cpu_memory)"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" when it is gone)."""
    if _HAS_PROC:
        try:
            return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _processes() -> Iterator[tuple[int, str]]:
    """``(pid, command line)`` of every process in sight."""
    if _HAS_PROC:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                yield int(entry.name), _cmdline(int(entry.name))
        return
    out = subprocess.run(["ps", "-axo", "pid=,command="], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        pid, _, cmdline = line.strip().partition(" ")
        yield int(pid), cmdline


_HAS_PROC = Path("/proc/self/cmdline").exists()
