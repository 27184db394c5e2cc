"""Find the control plane daemon, start one when none answers, and stop it.

The address is, in order: the ``address`` argument, ``JUPYTER_DEPLOY_ADDRESS``,
the discovery file ``daemon.json`` under the home folder (ignored when its pid
is dead), else a new daemon on a free loopback port. A daemon is started only
on a loopback address, in its own session (a kernel interrupt or restart
signals the kernel's process group, never the daemon), and under a lock so
that clients starting at the same moment end up with one daemon.

The channel is TLS for a non-loopback address, for a daemon whose discovery
file says it serves TLS, or whenever ``JUPYTER_DEPLOY_TLS_CA`` is set: the PEM
file of roots the daemon's certificate is checked against (unset: the system's).

Example::

    channel, address, metadata = connect()
    ControlPlaneStub(channel).GetInfo(InfoRequest(), metadata=metadata)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from .. import _wire, paths
from .._address import is_loopback, split_address
from .._version import __version__
from ..errors import ControlPlaneError, DeployError
from ..proto import control_pb2 as cpb
from ..proto import control_pb2_grpc

ADDRESS_ENV = "JUPYTER_DEPLOY_ADDRESS"
PAT_ENV = "JUPYTER_DEPLOY_PAT"
TLS_CA_ENV = "JUPYTER_DEPLOY_TLS_CA"
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
#: Seconds a daemon gets to answer after it was started, and a stop to finish.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
_LOG_ROTATE_BYTES = 10 << 20

Metadata = list[tuple[str, str]]


class DaemonNotRunning(DeployError):
    """No control plane answers, and none was to be started."""


def connect(address: str | None = None, pat: str | None = None, autostart: bool = True, *,
            check_version: bool = True) -> tuple[grpc.Channel, str, Metadata]:
    """A channel to the control plane, its address, and the call metadata that carries the token.

    Starts a daemon in the background when none answers and the address is
    loopback (and ``autostart``). The token is ``pat``, else ``JUPYTER_DEPLOY_PAT``,
    else the local user's token file. Raises DeployError when the daemon runs
    another version of jupyter_deploy (unless ``check_version`` is false).

    Example::

        channel, address, metadata = connect(autostart=False)  # DaemonNotRunning if none answers
    """
    home = paths.home()
    wanted = address or os.environ.get(ADDRESS_ENV) or None
    host = split_address(wanted)[0] if wanted else "127.0.0.1"
    found = _try(wanted or _discovered_address(home), pat, home, timeout=1.0,
                 tls=None if wanted else _discovered_tls(home))
    if found is None:
        if not autostart:
            where = f"answers at {wanted}" if wanted else f"running for {home}"
            if wanted and uses_tls(wanted):
                where += f" over TLS (does {TLS_CA_ENV} name the CA of its certificate?)"
            raise DaemonNotRunning(f"no daemon {where}; start one with `jupyter-deploy serve`")
        if not is_loopback(host):
            raise DeployError(f"no daemon answers at {wanted}; one is started automatically "
                              f"only on a loopback address: run `jupyter-deploy serve` there")
        if os.environ.get(TLS_CA_ENV):
            raise DeployError(f"no daemon answers over TLS at {wanted or 'the discovered address'}; "
                              f"none is started automatically while {TLS_CA_ENV} is set: run "
                              f"`jupyter-deploy serve --tls-cert FILE --tls-key FILE`")
        found = _start(home, wanted, pat)
    channel, address, metadata, info = found
    if check_version and info is not None and info.version != __version__:
        channel.close()
        raise DeployError(
            f"the control plane at {address} runs jupyter_deploy {info.version}, this client is "
            f"{__version__}: stop it with `jupyter-deploy stop` and retry (a new one starts, and "
            f"brings the deployments back)")
    return channel, address, metadata


def discover(home: Path | None = None) -> dict[str, Any] | None:
    """The discovery record (address, pid, version, started_at) of the daemon running for ``home``.

    None when there is no discovery file, or its daemon is gone (a stale file is ignored:
    the next daemon overwrites it).

    Example::

        record = discover()
        print(record["address"] if record else "no daemon")
    """
    try:
        record = json.loads((Path(home or paths.home()) / "daemon.json").read_text())
        return record if _alive(int(record["pid"])) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def info(address: str | None = None, pat: str | None = None) -> cpb.Info:
    """The running daemon's Info (version, pid, home, address); never starts one.

    Example::

        print(info().version)
    """
    channel, _, metadata = connect(address, pat, autostart=False, check_version=False)
    with channel:
        return _call(channel, "GetInfo", cpb.InfoRequest(), metadata)


def stop(address: str | None = None, pat: str | None = None, stop_runners: bool = True,
         timeout: float = STOP_TIMEOUT) -> cpb.Info:
    """Ask the daemon to stop (and its runners) and wait until it is gone; returns its Info.

    Example::

        stopped = stop()
        print(f"stopped pid {stopped.pid}")
    """
    channel, address, metadata = connect(address, pat, autostart=False, check_version=False)
    with channel:
        running = _call(channel, "GetInfo", cpb.InfoRequest(), metadata)
        _call(channel, "Shutdown", cpb.ShutdownRequest(stop_runners=stop_runners), metadata)
    local = is_loopback(split_address(address)[0])

    def gone() -> bool:
        if local:
            return not _alive(running.pid)
        # A pid means nothing on another host: there, gone means no longer answering.
        found = _try(address, pat, None, timeout=1.0)
        if found is not None:
            found[0].close()
        return found is None

    deadline = time.monotonic() + timeout
    while not gone():
        if time.monotonic() > deadline:
            hint = f"; kill it with `kill {running.pid}`" if local else ""
            raise DeployError(f"the control plane (pid {running.pid}) did not stop within "
                              f"{timeout:.0f} s{hint}")
        time.sleep(0.05)
    return running


# ---------------------------------------------------------------- helpers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _discovered_address(home: Path) -> str | None:
    record = discover(home)
    return record["address"] if record else None


def _discovered_tls(home: Path) -> bool:
    record = discover(home)
    return bool(record and record.get("tls"))


def uses_tls(address: str) -> bool:
    """Whether a channel to ``address`` is TLS: off loopback, or when JUPYTER_DEPLOY_TLS_CA is set."""
    return bool(os.environ.get(TLS_CA_ENV)) or not is_loopback(split_address(address)[0])


def open_channel(address: str, tls: bool | None = None) -> grpc.Channel:
    """A gRPC channel to the daemon at ``address``: TLS if ``tls`` or ``uses_tls(address)``."""
    if not (tls or uses_tls(address)):
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    ca = os.environ.get(TLS_CA_ENV)
    roots = None
    if ca:
        try:
            roots = Path(ca).expanduser().read_bytes()
        except OSError as e:
            raise DeployError(f"cannot read {TLS_CA_ENV}={ca}: {e.strerror or e}") from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots),
                               options=CHANNEL_OPTIONS)


def _metadata(pat: str | None, home: Path | None) -> Metadata:
    token = pat or os.environ.get(PAT_ENV)
    if not token and home is not None:
        try:
            token = (home / "local.token").read_text().strip()
        except OSError:
            return []
    return [(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)] if token else []


def _call(channel: grpc.Channel, method: str, request: Any, metadata: Metadata) -> Any:
    try:
        return getattr(control_pb2_grpc.ControlPlaneStub(channel), method)(
            request, timeout=30, metadata=metadata)
    except grpc.RpcError as e:
        raise ControlPlaneError(e.details() or str(e.code()), e.code().name) from None


def _try(address: str | None, pat: str | None, home: Path | None, timeout: float,
         tls: bool | None = None) -> tuple[grpc.Channel, str, Metadata, cpb.Info | None] | None:
    """``(channel, address, metadata, info)`` if a daemon answers at ``address``, else None.

    ``info`` is None when it answered with an error (e.g. UNAUTHENTICATED): the
    caller's first real call reports that error. ``tls``: True forces TLS.
    """
    if address is None:
        return None
    split_address(address)
    metadata = _metadata(pat, home)
    channel = open_channel(address, tls)
    try:
        found = control_pb2_grpc.ControlPlaneStub(channel).GetInfo(
            cpb.InfoRequest(), timeout=timeout, metadata=metadata)
    except grpc.RpcError as e:
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            channel.close()
            return None
        found = None
    return channel, address, metadata, found


def _unwritable(home: Path, e: OSError) -> str:
    return (f"the home folder {home} is not writable ({e.strerror}): make it writable by you "
            f"(chmod u+rwx {home}), or use another one (JUPYTER_DEPLOY_HOME)")


def _start(home: Path, address: str | None,
           pat: str | None) -> tuple[grpc.Channel, str, Metadata, cpb.Info | None]:
    """Start a daemon for ``home`` (on ``address``, else any free loopback port) unless one runs."""
    with contextlib.ExitStack() as locked:
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            (home / "logs").mkdir(exist_ok=True)
            locked.enter_context(_FileLock(home / "start.lock", timeout=60.0))
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise DeployError(_unwritable(home, e)) from None
        # Another client may have started one while we waited for the lock.
        found = _try(address or _discovered_address(home), pat, home, timeout=5.0,
                     tls=None if address else _discovered_tls(home))
        if found is not None:
            return found
        log = home / "logs" / "daemon.log"
        if log.exists() and log.stat().st_size > _LOG_ROTATE_BYTES:
            log.replace(log.with_name("daemon.log.1"))
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_deploy.control", "serve",
                 "--address", address or "127.0.0.1:0", "--home", str(home)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        # The daemon writes the discovery file only once it answers.
        while (record := discover(home)) is None or record["pid"] != proc.pid:
            if proc.poll() is not None:
                raise DeployError(f"the control plane daemon exited with code {proc.returncode} "
                                  f"before it answered:\n{_tail(log, offset)}")
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise DeployError(f"the control plane daemon did not answer within "
                                  f"{START_TIMEOUT:.0f} s:\n{_tail(log, offset)}")
            time.sleep(0.05)
        threading.Thread(target=_reap, args=(proc,), name="jupyter-deploy-reaper",
                         daemon=True).start()
        found = _try(record["address"], pat, home, timeout=10.0)
        if found is None:
            raise DeployError(f"the control plane daemon (pid {proc.pid}) started but does not "
                              f"answer at {record['address']}; see {log}")
        return found


def _reap(proc: subprocess.Popen) -> None:
    """Wait for the daemon to exit, so it leaves no zombie behind in this process."""
    # Blocked here, a signal goes to a thread that acts on it: the main thread of a kernel
    # sleeping in a cell is woken by an interrupt only if the interrupt is delivered to it.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    proc.wait()


def _tail(log: Path, offset: int, lines: int = 20) -> str:
    """The last lines this start wrote to ``log`` (``offset``: its size before)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:]) or f"  ({log} is empty)"


class _FileLock:
    """An exclusive flock on ``path``, waited for at most ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout = path, timeout

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise DeployError(f"another process has been starting the control plane for "
                                      f"{self.timeout:.0f} s ({self.path} is locked); see "
                                      f"{self.path.parent / 'logs' / 'daemon.log'}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
