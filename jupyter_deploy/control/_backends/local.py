"""The ``local`` backend: each replica is a runner process on this host.

A replica is ``<python> -m jupyter_deploy.runner --port-file home/run/<replica id>.port
...``, started in its own session (signals sent to a kernel's process group never
reach it) with its output appended to the deployment's log. The runner writes the
port it bound to into its port file; its address is ``127.0.0.1:<port>``.

The port file's path in the command line names the replica, so a daemon restarted
after SIGKILL finds every runner a previous one left by their command lines
(``/proc``, or ``ps`` where there is none) and hands them back from ``list_running``.

Where it can, a replica is not a fresh interpreter but a fork of the runner template
(``runner._zygote``, started with the daemon, the runner's modules imported): its start
costs ~10 ms of CPU instead of ~250. The child does what the command line above would
(own session, clean environment, the owner's uid, working folder, log), and the template
reaps it and reports its exit code. Its command line is the template's, so the template
also writes ``home/run/<replica id>.pid`` (pid, start time, port file), which is how a
restarted daemon finds it. A runner of another interpreter (a virtual environment's), or
any start the template cannot do (not started, ended, refused), is spawned as above;
``JUPYTER_DEPLOY_RUNNER_ZYGOTE=off`` spawns every runner.

A runner gets a clean environment: the spec's variables (its own, and the
deployment's secrets) plus the few of the daemon's a process needs to run
(``INHERITED``: ``PATH``, locale, CUDA and cache settings, ...), never the rest
(tokens, the home's path, whatever else the daemon was started with). A spec with
``run_as`` runs as that OS user (uid, group, the runners' group, umask 077), with
its own ``$HOME`` and working folder, and its port file in its own ``run_dir``
(``home/sandboxes/<uid>/run``; ``list_running`` finds those too).

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
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ... import _wire
from ...proto import runner_pb2, runner_pb2_grpc
from ...runner._limits import describe_exit
from .._host_info import HostInfo
from . import _zygote
from .base import (
    Health,
    Node,
    NodepoolBackend,
    ReloadUnreachable,
    ReplicaHandle,
    ReplicaSpec,
    StartFailed,
)

log = logging.getLogger("jupyter_deploy.scheduler")

RUNNER_MODULE = "jupyter_deploy.runner"
#: Seconds a health check may take.
HEALTH_TIMEOUT = 1.0
#: Seconds ``stop`` waits for a killed runner of ours to be reaped.
REAP_TIMEOUT = 5.0
#: The daemon's variables a runner inherits (the rest never reach the model): what a process
#: needs to run, find libraries, GPUs, certificates and proxies, and the model caches.
INHERITED = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "PYTHONPATH", "XDG_CACHE_HOME",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "JUPYTER_DEPLOY_CALL_LOG", "JUPYTER_DEPLOY_MAX_FETCH_BYTES",  # runner settings
    "COVERAGE_PROCESS_START", "COVERAGE_RCFILE",  # coverage of runners under test
})
#: Prefixes of inherited variables (locale, GPU stack, threads, pip's index, model caches).
INHERITED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NCCL_", "OMP_", "MKL_", "PIP_", "HF_", "HUGGINGFACE_",
                      "TRANSFORMERS_", "TORCH_", "COV_CORE_")


@dataclass
class LocalHandle(ReplicaHandle):
    """A runner process: one this backend started (``popen``, or forked by its ``zygote``), or one a
    previous daemon left. ``start_time`` (with the pid) names a process the runner template forked."""

    port_file: Path = Path()
    popen: subprocess.Popen | None = None
    zygote: _zygote.Zygote | None = None
    start_time: str = ""
    ipc: str | None = None  # its ipc endpoint once read ("" none)


class LocalBackend(NodepoolBackend):
    """Runner replicas as processes on this host.

    Args:
        home: the control plane's home folder (port files under ``run/``).
        host: this host's capacity, for ``describe()``.
    """

    provider = "local"

    def __init__(self, home: Path, host: HostInfo):
        self.host = host
        self.home = Path(home)
        self.run_dir = self.home / "run"
        # home/run/<id>.port, or home/sandboxes/<uid>/run/<id>.port for a runner with its own OS user.
        self._marker_re = re.compile(re.escape(f"{self.home}{os.sep}")
                                     + r"(?:sandboxes/\d+/)?run/([0-9a-f]{12})\.port")
        self._health: dict[str, tuple[grpc.Channel, Any]] = {}  # replica id -> channel, stub
        self._zygote: _zygote.Zygote | None = None
        self._zygote_launched = 0.0  # monotonic time of the last launch (one a minute at most)
        self._launch_zygote()

    def start(self, spec: ReplicaSpec) -> LocalHandle:
        run_as = spec.run_as
        port_file = (run_as.run_dir if run_as else self.run_dir) / f"{spec.replica_id}.port"
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.unlink(missing_ok=True)
        _wire.ipc_file(port_file).unlink(missing_ok=True)
        notes = []
        python = shutil.which(spec.python)
        if python is None:
            notes.append(f"the interpreter {spec.python} is missing or not executable; using the daemon's "
                         f"{sys.executable}")
            log.warning("deployment %s/%s: %s", spec.user_id, spec.deployment_id, notes[-1])
            python = sys.executable
        cmd = [python, "-m", RUNNER_MODULE, "--model-path", str(spec.model_path), "--address", "127.0.0.1:0",
               "--port-file", str(port_file), *spec.args]
        env = runner_environment(spec)
        as_user: dict[str, Any] = {}
        zygote = self._zygote_for(python)
        if run_as is not None and zygote is None:
            # Not Popen(user=...): that forks (vfork cannot change users), which runs grpc's fork
            # handlers in the child, and they crash it now and then (SIGSEGV in "event_engine").
            # A fresh interpreter changes users instead, then becomes the runner (same pid).
            cmd = [sys.executable, "-I", "-S", "-c", _AS_USER, str(run_as.uid), str(run_as.gid),
                   ",".join(map(str, run_as.groups)), *cmd]
            as_user = {"umask": 0o077, "cwd": run_as.home}
        with spec.log.open() as out:
            for note in notes:
                out.write(f"jupyter_deploy scheduler: {note}\n".encode())
            gpus = ",".join(map(str, spec.gpus)) or "none"
            who = f", uid {run_as.uid}" if run_as else ""
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} replica {spec.replica_id} of version "
                      f"{spec.version_id} starting (GPUs: {gpus}{who}) ---\n".encode())
            out.flush()
            if zygote is not None:
                try:
                    self.run_dir.mkdir(parents=True, exist_ok=True)  # pid files are the daemon's, here
                    pid, started = zygote.start(
                        cmd[3:], env, out.fileno(), pid_file=self._pid_file(spec.replica_id), port_file=port_file,
                        cwd=run_as.home if run_as else None, umask=0o077 if run_as else None,
                        user=(run_as.uid, run_as.gid, run_as.groups) if run_as else None)
                    return LocalHandle(spec.replica_id, pid, port_file, zygote=zygote, start_time=started)
                except _zygote.ZygoteUnavailable as e:
                    log.info("replica %s: started as a fresh process: %s", spec.replica_id, e)
                    if run_as is not None:
                        cmd = [sys.executable, "-I", "-S", "-c", _AS_USER, str(run_as.uid), str(run_as.gid),
                               ",".join(map(str, run_as.groups)), *cmd]
                        as_user = {"umask": 0o077, "cwd": run_as.home}
            try:
                popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True, **as_user)
            except OSError as e:
                out.write(f"jupyter_deploy scheduler: cannot start {cmd[0]}: {e}\n".encode())
                raise StartFailed(f"a start failure ({e})") from e
        return LocalHandle(spec.replica_id, popen.pid, port_file, popen)

    def poll(self, handle: LocalHandle) -> str | None:
        if handle.popen is not None:
            code = handle.popen.poll()
            return None if code is None else describe_exit(code)
        if handle.start_time:  # forked by a runner template: its pid and start time name it
            code = handle.zygote.exit_code(handle.pid) if handle.zygote is not None else None
            if code is None and _zygote.process_start_time(handle.pid) == handle.start_time:
                return None
            if code is None and handle.zygote is not None:  # reaped just now: its report is on its way
                code = handle.zygote.exit_code(handle.pid, wait=1.0)
            return "exit code unknown (re-adopted after a daemon restart)" if code is None else describe_exit(code)
        # Not our child, so no exit status: gone (or a zombie, whose cmdline is empty) is all we learn.
        if str(handle.port_file) in _cmdline(handle.pid):
            return None
        return "exit code unknown (re-adopted after a daemon restart)"

    def address(self, handle: LocalHandle) -> str | None:
        port = _read_port(handle.port_file)
        return None if port is None else f"127.0.0.1:{port}"

    def ipc_address(self, handle: LocalHandle) -> str:
        """The replica's same-host ipc endpoint (its ipc file, beside the port file), "" where it has
        none. Read again after a daemon restart, as the port is: nothing else needs to remember it."""
        if handle.ipc is None:
            handle.ipc = _read_ipc_file(_wire.ipc_file(handle.port_file))
        return handle.ipc

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
        if handle.start_time and not _zygote.wait_gone(handle.pid, handle.start_time, REAP_TIMEOUT):
            log.warning("replica %s (pid %d) outlived SIGKILL by %g s", handle.replica_id, handle.pid,
                        REAP_TIMEOUT)
        if handle.popen is not None:
            try:
                handle.popen.wait(REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("replica %s (pid %d) outlived SIGKILL by %g s", handle.replica_id, handle.pid,
                            REAP_TIMEOUT)
        if handle.replica_id in self._health:
            self._health.pop(handle.replica_id)[0].close()
        handle.port_file.unlink(missing_ok=True)
        if handle.start_time:
            self._pid_file(handle.replica_id).unlink(missing_ok=True)
        _wire.ipc_file(handle.port_file).unlink(missing_ok=True)

    def list_running(self) -> list[LocalHandle]:
        """Every runner process whose command line names a port file under ``home/run/`` (or an
        owner's ``home/sandboxes/<uid>/run/``).

        Runners the runner template forked have its command line: their pid files
        (``home/run/<replica id>.pid``, written by the template) name them instead.
        Port and pid files of runners that no longer run are removed on the way.
        """
        found = {}
        for pid, cmdline in _processes():
            match = self._marker_re.search(cmdline)
            if match and RUNNER_MODULE in cmdline:
                found[match.group(1)] = LocalHandle(match.group(1), pid, Path(match.group(0)))
        for path in self.run_dir.glob("*.pid"):
            named = _zygote.read_pid_file(path)
            if named is not None and named[1] and _zygote.process_start_time(named[0]) == named[1] \
                    and path.stem not in found:
                found[path.stem] = LocalHandle(path.stem, named[0], named[2], start_time=named[1])
            else:
                path.unlink(missing_ok=True)
        for path in (*self.run_dir.glob("*.port"), *self.home.glob("sandboxes/*/run/*.port")):
            if path.stem not in found:
                path.unlink(missing_ok=True)
                _wire.ipc_file(path).unlink(missing_ok=True)
        return list(found.values())

    can_reload = True

    def reload(self, handle: LocalHandle, model_path: Path, version_id: str, *, run_test: bool, token: str,
               timeout: float) -> Any:
        address = self.address(handle)
        if address is None:
            raise ReloadUnreachable(f"replica {handle.replica_id} has no address")
        # A channel of its own: this runs beside the scheduler's thread, which owns self._health.
        with grpc.insecure_channel(address) as channel:
            try:
                return runner_pb2_grpc.RunnerStub(channel).Reload(
                    runner_pb2.ReloadRequest(model_path=str(model_path), version_id=version_id, run_test=run_test),
                    timeout=timeout, metadata=((_wire.ROUTE_TOKEN_KEY, token),))
            except grpc.RpcError as e:
                raise ReloadUnreachable(f"replica {handle.replica_id} did not take the reload: "
                                        f"{e.code().name}: {e.details()}") from None

    def describe(self) -> list[Node]:
        """This host, as one node."""
        gpus = [g.name for g in self.host.gpus]
        return [Node(socket.gethostname(), {}, self.host.cpus, self.host.memory, gpus)]

    def close(self) -> None:
        # The runner template stays until this backend is gone (weakref.finalize) or the process
        # ends: meanwhile it reports the exits of the runners it forked, which outlive the daemon.
        for channel, _ in self._health.values():
            channel.close()
        self._health.clear()

    def _pid_file(self, replica_id: str) -> Path:
        return self.run_dir / f"{replica_id}.pid"

    def _launch_zygote(self) -> None:
        """Start the runner template (with the daemon's inherited variables only), unless it is off;
        or take the one the daemon started for this home first thing."""
        self._zygote_launched = time.monotonic()
        if not _zygote.enabled():
            return
        try:
            self._zygote = _zygote.take(self.home) or _zygote.Zygote.launch(self.home, _inherited())
            # Ends with this backend (its thread keeps the template's object alive, not this one).
            weakref.finalize(self, self._zygote.close)
        except OSError as e:
            log.warning("cannot start the runner template (%s); runners start as fresh processes", e)

    def _zygote_for(self, python: str) -> _zygote.Zygote | None:
        """The runner template, where it can start a runner of ``python`` (it runs the daemon's)."""
        if self._zygote is not None and self._zygote.gone and time.monotonic() - self._zygote_launched > 60:
            log.warning("the runner template ended (exit code %s); starting another", self._zygote.popen.poll())
            self._launch_zygote()  # this start is a fresh process; the next ones fork again
            return None
        if self._zygote is None or self._zygote.gone or not _zygote.runs(python):
            return None
        return self._zygote

    def _signal(self, handle: LocalHandle, sig: int) -> None:
        if self.poll(handle) is not None:
            return  # its pid may already belong to another process
        try:
            # The runner leads its own session, so the group also reaches what the model started.
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            if handle.start_time:  # forked a moment ago: not yet the leader of its own session
                try:
                    os.kill(handle.pid, sig)
                except ProcessLookupError:
                    pass


# Run as root with a clean environment: sets the groups, gid and uid (so no capability is left),
# then execs the runner; where that user cannot run the version's interpreter, the daemon's.
_AS_USER = """
import os, sys
uid, gid, groups, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
os.setgroups([int(g) for g in groups.split(",") if g])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
for python in dict.fromkeys([cmd[0], sys.executable]):
    try:
        os.execv(python, [python, *cmd[1:]])
    except OSError as e:
        print(f"jupyter_deploy scheduler: the runner's user (uid {uid}) cannot run {python} ({e.strerror}); "
              + ("make it and the folders above it readable by others, or set JUPYTER_DEPLOY_RUNNER_UIDS=off"
                 if python == sys.executable else f"using the daemon's {sys.executable}"), flush=True)
sys.exit(126)
"""


def prelaunch_zygote(home: Path) -> None:
    """Start the runner template for ``home`` now (the daemon, before its own imports), for the
    local backend to take when it is made (``_zygote.prelaunch``)."""
    _zygote.prelaunch(Path(home), _inherited())


def _inherited() -> dict[str, str]:
    """The daemon's variables that ``INHERITED`` names: all the runner template gets."""
    return {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}


def runner_environment(spec: ReplicaSpec, environ: dict[str, str] | None = None) -> dict[str, str]:
    """A runner's whole environment: the spec's variables, plus the daemon's that ``INHERITED`` names."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}
    if spec.run_as is not None:  # its own home; it has no name on the host
        env.update(HOME=str(spec.run_as.home), USER=spec.run_as.name, LOGNAME=spec.run_as.name)
    else:  # the daemon's user: its home (caches, pip's config) as before
        env.update({k: environ[k] for k in ("HOME", "USER", "LOGNAME") if k in environ})
    return {**env, **spec.env, "PYTHONUNBUFFERED": "1"}


def _read_port(path: Path) -> int | None:
    try:
        return int(_read_small(path))
    except (OSError, ValueError):
        return None


def _read_ipc_file(path: Path) -> str:
    """The ipc endpoint a runner wrote ("" none). Only an abstract socket of ours: the runner (the
    model's code) names it, and clients connect to it."""
    try:
        text = _read_small(path).strip()
    except OSError:
        return ""
    return text if text.startswith("ipc://@jupyter_deploy-") and text.isprintable() else ""


def _read_small(path: Path) -> str:
    # The port file's folder may belong to the runner's OS user, not to us: follow no link,
    # and do not wait on whatever else it put there (a FIFO).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        return os.read(fd, 256).decode(errors="replace")
    finally:
        os.close(fd)


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
