"""The control plane daemon process: one per home folder, found through a discovery file.

``serve(home, address)`` holds ``home/daemon.lock`` for its whole life (so a
second daemon on the same home refuses to start), serves the ControlPlane gRPC
service, and writes ``home/daemon.json`` (address, pid, version, started_at)
once the service answers. SIGTERM, SIGINT and the Shutdown RPC stop it
cleanly: the scheduler starts nothing more, the server drains (``STOP_GRACE``)
while the runners stop (``RUNNER_STOP_GRACE`` between SIGTERM and SIGKILL, unless
the Shutdown call asked to keep them), the plane stops, the discovery file is removed.
Whatever it is doing, the process ends within ``STOP_DEADLINE`` seconds of being
told to stop: past it, it exits at once (the state is SQLite transactions, so
nothing is half written; runners left behind are found and stopped at the next start).

Clients start it with ``start_new_session=True`` (see ``client._daemon``), so
the daemon and its runners are out of reach of signals sent to a kernel's
process group; ``jupyter-deploy serve`` runs it in the foreground instead.

It listens on loopback unless told otherwise; any other address (e.g.
``0.0.0.0:7700``) requires TLS: ``--tls-cert FILE --tls-key FILE`` (PEM). With
them it serves TLS only, on any address.

It starts and supervises the HTTP gateway (``_gateway``; ``--gateway-address``,
default loopback on a free port, ``off`` for none), whose URL the discovery file
and ``GetInfo`` carry.

Example::

    python -m jupyter_deploy.control serve --address 127.0.0.1:7700
    python -m jupyter_deploy.control serve --address 0.0.0.0:7700 --tls-cert cert.pem --tls-key key.pem
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time
from pathlib import Path

import grpc

from .. import _wire, paths
from .._address import is_loopback, split_address
from .._version import __version__
from ..errors import DeployError
from ..proto import control_pb2 as cpb
from ..proto import control_pb2_grpc
from . import _home
from ._auth import write_atomic

DEFAULT_ADDRESS = "127.0.0.1:0"
GATEWAY_DEFAULT = "127.0.0.1:0"
#: Seconds in-flight calls get to finish when the daemon stops (then streams are cancelled).
STOP_GRACE = 2.0
#: Seconds runners get between SIGTERM and SIGKILL when the daemon stops them on its way out.
RUNNER_STOP_GRACE = 3.0
#: Seconds from being told to stop to the end of the process, whatever still runs then.
STOP_DEADLINE = 9.0

log = logging.getLogger("jupyter_deploy.daemon")


def serve(home: Path | None = None, address: str = DEFAULT_ADDRESS, tls_cert: str | Path | None = None,
          tls_key: str | Path | None = None, gateway_address: str | None = GATEWAY_DEFAULT,
          gateway_grpc_address: str | None = None) -> None:
    """Run the daemon for ``home`` on ``address`` until it is told to stop.

    ``tls_cert`` and ``tls_key`` (PEM files): serve TLS; required for a
    non-loopback address. Raises DeployError, before anything starts, for a
    non-loopback address without them, unreadable ones, or when a daemon
    already runs on this home. ``gateway_address`` (None or ``"off"``: no gateway)
    and ``gateway_grpc_address``: where the HTTP gateway and its Open Inference
    Protocol gRPC port listen (off loopback, with the same TLS files).

    Example::

        serve(Path("~/.jupyter_deploy").expanduser(), "127.0.0.1:0")  # port 0: any free port
    """
    home = Path(home or paths.home())
    # Runners, their environments and their logs live under the same home as the state.
    os.environ["JUPYTER_DEPLOY_HOME"] = str(home)
    host, _ = split_address(address)
    credentials = _tls_credentials(host, tls_cert, tls_key)
    _home.prepare(home)
    lock = _take_lock(home)
    from ._backends.local import prelaunch_zygote

    prelaunch_zygote(home)  # the runner template imports while this process does (below)
    from ._plane import ControlPlane
    from ._service import make_server

    signalled: list[int] = []
    _on_signals(signalled)
    stopping = threading.Event()
    _exit_by_deadline(signalled, stopping)

    try:
        plane = ControlPlane(home, address)
    except sqlite3.DatabaseError as e:
        os.close(lock)
        if isinstance(e, sqlite3.OperationalError):  # locked, I/O: the file may be fine
            raise
        state = home / "state.db"
        raise DeployError(f"{state} is damaged ({e}): restore it from a backup, or move it aside "
                          f"(mv {state} {state}.bad) to start with an empty state") from None
    _home.make_private(home)  # the files this start created, and those an older one left open
    try:
        server, port = make_server(plane, address, credentials)
    except OSError as e:
        raise DeployError(str(e)) from None
    plane.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # Clients on this machine reach a wildcard address (0.0.0.0, ::) on loopback.
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    local_address = f"[{local}]:{port}" if ":" in local else f"{local}:{port}"
    gateway = None
    if gateway_address and gateway_address != "off":
        from ._gateway import Gateway

        try:
            gateway = Gateway(home, local_address, gateway_address, gateway_grpc_address,
                              tls=(str(tls_cert), str(tls_key)) if credentials is not None else None,
                              daemon_tls=credentials is not None)
        except DeployError:
            server.stop(0)
            os.close(lock)
            raise
        plane.gateway_url, plane.gateway_grpc_address = gateway.url, gateway.grpc_address
    discovery = home / "daemon.json"
    try:
        plane.start()
        server.start()
        if credentials is None:
            _wait_answering(local_address, home)
        else:
            _wait_tls_answering(local, port)
        if gateway is not None:
            gateway.start()
        write_atomic(discovery, json.dumps({
            "address": local_address, "pid": os.getpid(), "version": __version__,
            "started_at": time.time(), "tls": credentials is not None,
            "gateway": gateway.url if gateway else None,
            "gateway_grpc": gateway.grpc_address if gateway else None}).encode())
        log.info("listening on %s%s (home %s, pid %d)", plane.address,
                 " (TLS)" if credentials is not None else "", home, os.getpid())
        # Polled, not waited on: a signal handler must not touch an Event's lock.
        while not signalled and not plane.shutdown_requested.wait(0.2):
            pass
    finally:
        stopping.set()
        log.info("stopping")
        plane.scheduler.halt()  # no replica starts from now on, and the pass under way ends soon
        plane.events.close()  # Watch streams end now, not at the end of the grace period
        if gateway is not None:
            gateway.stop()
        stopped = server.stop(STOP_GRACE)
        # The runners stop while calls in flight finish: they need no RPC, and the two graces overlap.
        plane.scheduler.stop(plane.stop_runners_on_shutdown, grace=RUNNER_STOP_GRACE)
        stopped.wait(STOP_GRACE + 1)
        plane.stop(stop_runners=plane.stop_runners_on_shutdown)
        try:
            if json.loads(discovery.read_text())["pid"] == os.getpid():
                discovery.unlink()
        except (OSError, ValueError, KeyError):
            pass
        os.close(lock)
        log.info("stopped")


def _tls_credentials(host: str, cert: str | Path | None,
                     key: str | Path | None) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files, or None (plain text, loopback only); raises DeployError."""
    if not cert and not key:
        if is_loopback(host):
            return None
        raise DeployError(f"refusing to listen on {host} without TLS: an address other than loopback "
                          f"(127.0.0.1, localhost, ::1) requires --tls-cert FILE and --tls-key FILE")
    if not cert or not key:
        raise DeployError("TLS needs both --tls-cert FILE and --tls-key FILE (PEM), one is missing")
    pems = []
    for what, path in (("--tls-key", key), ("--tls-cert", cert)):
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DeployError(f"cannot read {what} {path}: {e.strerror or e}") from None
        if b"-----BEGIN" not in data:
            raise DeployError(f"{what} {path} is not a PEM file")
        pems.append(data)
    return grpc.ssl_server_credentials([(pems[0], pems[1])])


def _wait_tls_answering(host: str, port: int, timeout: float = 30.0) -> None:
    """Return once a TLS handshake (HTTP/2) succeeds on ``host:port``.

    The certificate is not checked here: the daemon may not hold the CA that signed it.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=host):
                return
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() > deadline:
                raise DeployError(f"the TLS listener on port {port} does not answer: {e}") from None
            time.sleep(0.05)


def _take_lock(home: Path) -> int:
    """An fd holding ``home/daemon.lock``; the kernel drops the lock when the process ends."""
    lock = os.open(home / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        try:
            running = json.loads((home / "daemon.json").read_text())
            where = f" at {running['address']} (pid {running['pid']})"
        except (OSError, ValueError, KeyError):
            where = " (still starting or stopping)"
        raise DeployError(f"a control plane daemon already runs for {home}{where}; "
                          f"stop it with `jupyter-deploy stop`") from None
    return lock


def _on_signals(signalled: list[int]) -> None:
    def handler(signum: int, frame: object) -> None:
        if signalled:  # a second Ctrl-C: the user does not want to wait for the runners
            os._exit(128 + signum)
        signalled.append(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _exit_by_deadline(signalled: list[int], stopping: threading.Event, deadline: float = STOP_DEADLINE) -> None:
    """From a daemon thread: once a signal came (``signalled``) or the stop began (``stopping``),
    end the process ``deadline`` seconds later if it has not ended by then.

    It watches the list, not an event the handler would set: a signal handler must not take
    a lock its own thread may hold. So a signal that lands while the main thread is busy
    (starting up, deep in a stop) still bounds the time to exit.
    """
    def run() -> None:
        while not signalled and not stopping.wait(0.1):
            pass
        time.sleep(deadline)
        log.error("still stopping %g s after being told to stop: exiting now (runners left behind are "
                  "stopped at the next start)", deadline)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    threading.Thread(target=run, name="jupyter_deploy-exit-deadline", daemon=True).start()


def _wait_answering(address: str, home: Path, timeout: float = 30.0) -> None:
    """Return once GetInfo answers on ``address``, as a client would call it."""
    token = (home / "local.token").read_text().strip()
    with grpc.insecure_channel(address) as channel:
        control_pb2_grpc.ControlPlaneStub(channel).GetInfo(
            cpb.InfoRequest(), timeout=timeout, wait_for_ready=True,
            metadata=[(_wire.AUTHORIZATION_KEY, _wire.BEARER_PREFIX + token)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_deploy.control")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the control plane daemon in the foreground")
    p.add_argument("--address", default=DEFAULT_ADDRESS,
                   help="HOST:PORT (default: 127.0.0.1, a free port)")
    p.add_argument("--home",
                   help="the state folder (default: $JUPYTER_DEPLOY_HOME or ~/.jupyter_deploy)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="serve TLS with this PEM certificate (chain); needed off loopback")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key")
    p.add_argument("--gateway-address", default=GATEWAY_DEFAULT, metavar="HOST:PORT",
                   help="the HTTP gateway (REST, Open Inference Protocol, OpenAI-compatible); default "
                        "127.0.0.1, a free port; 'off' for none; off loopback it needs TLS")
    p.add_argument("--gateway-grpc-address", default=None, metavar="HOST:PORT",
                   help="the gateway's Open Inference Protocol gRPC port (default: a free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        serve(Path(args.home) if args.home else None, args.address, args.tls_cert, args.tls_key,
              args.gateway_address, args.gateway_grpc_address)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
