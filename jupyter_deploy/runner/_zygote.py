"""The runner template: a process with the runner's modules imported that forks one runner per replica.

A fresh ``python -m jupyter_deploy.runner`` spends most of its start importing (grpc, protobuf,
the model host: a few hundred ms of CPU); a fork of a process that did it already starts in a
few ms. The local backend (``control._backends._zygote``) starts this process next to the
daemon, with the daemon's inherited environment only, and talks to it over a
``SOCK_SEQPACKET`` socket (file descriptor ``--fd``):

- it sends ``{"ready": pid}`` once the imports are done;
- a request ``{"pid_file", "port_file"}`` with two files attached (``SCM_RIGHTS``), the
  replica's log and the end of a stream socket of its own, forks a child. The answer is
  ``{"pid": pid, "start_time": ...}`` (or ``{"error": why}``), once ``pid_file`` holds
  ``"<pid> <start time> <port file>"`` (what finds the runner again after a daemon restart:
  its command line is this process's);
- the child reads the rest from its own socket, ``{"argv": [...], "env": {...}, "cwd",
  "umask", "user": [uid, gid, [groups]]}``, so the template never holds a deployment's
  secrets (every later child would get a copy of its memory), does what a fresh runner
  process gets from its supervisor, then runs the runner's ``main(argv)``: its own session,
  stdin from ``/dev/null``, stdout and stderr to the log, that environment and nothing else,
  working folder, umask, groups, gid and uid (dropped for good, before any model code runs),
  then exits with ``main``'s code;
- each child that ends is reaped here and reported as ``{"exited": pid, "code": code}``
  (``Popen.returncode``'s convention: ``-N`` for signal N).

It forks only while it has a single thread (nothing here starts one: imports only, never a
gRPC channel or server). It ends when the daemon's end of the socket closes (the daemon
stopped or was killed); runners it started keep running, and the next daemon re-adopts them.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
import traceback

_LAUNCHED_IN = os.getcwd()
#: Largest request, in bytes (paths: the environment goes to the child on its own socket).
MAX_MESSAGE = 65536


def preload() -> None:
    """Import what a runner imports on its way to serving, so its children need not; and build
    what its first use would (pydantic's validators and plugin scan, for the batcher's settings)."""
    from .__main__ import grpc_listener_off

    grpc_listener_off()  # grpc reads its settings as it loads: the forked runners get the runner's
    import concurrent.futures.thread  # noqa: F401
    import ctypes  # noqa: F401  (the runner's non-dumpable prctl)
    import grp  # noqa: F401
    import queue  # noqa: F401
    import tarfile  # noqa: F401

    import grpc._interceptor  # noqa: F401  (grpc.server() imports these on first use)
    import grpc._server  # noqa: F401
    from cryptography.exceptions import InvalidSignature  # noqa: F401  (route tokens)
    from cryptography.hazmat.primitives import serialization  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: F401
    from grpc_health.v1 import health, health_pb2  # noqa: F401

    from .. import _tokens, checkpoints, config, configs, environment  # noqa: F401
    from ..model import _batcher, _host  # noqa: F401
    from . import __main__, _limits, _ray_actor, _service, _telemetry  # noqa: F401

    _batcher.BatcherSettings.from_mapping({"enabled": True, "max_batch_size": 2, "max_latency_ms": 1})
    try:  # the same-host data plane's, where installed (a module only: no context before the fork)
        import zmq  # noqa: F401
    except ImportError:
        pass


def start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot, ``/proc/<pid>/stat``): with the pid, it
    names one process, whatever later reuses the pid. "" where there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode())


def _read_all(fd: int) -> bytes:
    chunks = []
    with socket.socket(fileno=fd) as private:
        while chunk := private.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def _child(sock: socket.socket, wakeup: tuple[int, int], log_fd: int, private: int) -> None:
    """In the forked child: become the replica's runner; never returns."""
    code = 1
    try:
        os.setsid()  # first: signals sent to the daemon's or a kernel's process group never reach it
        sock.close()
        signal.set_wakeup_fd(-1)
        for fd in wakeup:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request = json.loads(_read_all(private))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        if request.get("cwd"):
            os.chdir(request["cwd"])
            if sys.path and sys.path[0] == _LAUNCHED_IN:  # `-m` put the working folder first: the runner's
                sys.path[0] = os.getcwd()
        if request.get("umask") is not None:
            os.umask(request["umask"])
        if request.get("user"):
            uid, gid, groups = request["user"]
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)  # all three: no way back to the daemon's user
        os.environ.clear()
        os.environ.update(request["env"])
        from . import __main__ as runner

        sys.argv = [runner.__file__, *request["argv"]]  # as `python -m jupyter_deploy.runner` has it
        code = runner.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - say why in the replica's log, then exit like a crashed runner
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) else 1)


def _start(sock: socket.socket, wakeup: tuple[int, int], request: dict, fds: list[int]) -> None:
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        _send(sock, {"error": "a start request carries the replica's log file and its own socket"})
        return
    pid = os.fork()
    if pid == 0:
        _child(sock, wakeup, *fds)
    for fd in fds:
        os.close(fd)
    try:
        pid_file = request["pid_file"]
        tmp = f"{pid_file}.{os.getpid()}.tmp"
        started = start_time(pid)
        with open(tmp, "w") as f:
            f.write(f"{pid} {started} {request['port_file']}\n")
        os.replace(tmp, pid_file)
    except OSError as e:
        # Without it a restarted daemon would never find this runner: none rather than one it loses.
        os.kill(pid, signal.SIGKILL)
        _send(sock, {"error": f"cannot write the pid file {request['pid_file']}: {e}"})
        return
    _send(sock, {"pid": pid, "start_time": started})


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(fd: int) -> None:
    """Answer start requests on the socket ``fd`` until its other end closes."""
    sock = socket.socket(fileno=fd)
    preload()
    # What is imported now stays out of the collector's way: children neither scan it nor, by
    # touching its objects' reference counts in a collection, copy its pages.
    gc.collect()
    gc.freeze()
    wakeup = os.pipe()
    for end in wakeup:
        os.set_blocking(end, False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below, through the pipe
    try:
        _send(sock, {"ready": os.getpid()})
        _answer(sock, wakeup)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon is gone: so is this; its runners stay


def _answer(sock: socket.socket, wakeup: tuple[int, int]) -> None:
    while True:
        ready, _, _ = select.select([sock, wakeup[0]], [], [])
        if wakeup[0] in ready:
            while True:
                try:
                    if not os.read(wakeup[0], 512):
                        break
                except BlockingIOError:
                    break
            _reap(sock)
        if sock in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                return  # the daemon is gone: so is this; its runners stay
            try:
                request = json.loads(data)
            except ValueError:
                _send(sock, {"error": "a request is one JSON object"})
                continue
            _start(sock, wakeup, request, fds)
        _reap(sock)  # a SIGCHLD that came while forking


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m jupyter_deploy.runner._zygote", description=__doc__.split("\n")[0])
    p.add_argument("--fd", type=int, required=True, help="the daemon's socket (SOCK_SEQPACKET)")
    p.add_argument("--home", help="the control plane's home (named here so its processes are found by it)")
    serve(p.parse_args().fd)
