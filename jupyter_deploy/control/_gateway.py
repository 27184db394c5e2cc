"""The HTTP gateway's process, started and supervised by the daemon.

The gateway (``python -m jupyter_deploy.gateway``) serves REST, the Open Inference
Protocol and an OpenAI-compatible API for every deployment; it resolves routes
through the daemon like the Python client and calls runners directly, so the daemon
stays off the hot path. The daemon only keeps it running: it binds the HTTP socket
itself and hands it to each gateway process it starts (so the address never changes
across restarts, and is known, and published, before the first process answers),
restarts a process that exits with a growing pause, and stops it on shutdown. The
gateway exits by itself when the daemon that started it is gone.

It never imports the gateway: the two share only the command line below.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .._address import is_loopback, split_address
from ..errors import DeployError
from ._auth import write_atomic

log = logging.getLogger("jupyter_deploy.daemon")

#: The gateway's address when none is given: loopback, any free port.
DEFAULT_ADDRESS = "127.0.0.1:0"
#: Seconds between restarts of a gateway that keeps exiting (doubling up to the last).
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
#: A gateway that ran this long before it exited restarts at the first pause again.
STABLE_SECONDS = 60.0
#: Seconds a stopping gateway gets to finish its requests before it is killed.
STOP_GRACE = 2.0  # the daemon must be gone within 9 s of SIGTERM (daemon.STOP_DEADLINE)


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A gateway of a daemon killed a moment ago may still hold a fixed port for up to a second.
    deadline = time.monotonic() + (3.0 if port else 0.0)
    while True:
        try:
            sock.bind((host, port))
            return sock
        except OSError as e:
            if time.monotonic() >= deadline:
                sock.close()
                raise DeployError(f"the gateway cannot listen on {host}:{port} ({e.strerror or e}): "
                                  f"pick another {what} or free that port") from None
            time.sleep(0.1)


def _url_host(host: str) -> str:
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # wildcard: reached on loopback
    return f"[{local}]" if ":" in local else local


class Gateway:
    """The gateway process of one daemon: bound addresses, the process, its restarts.

    Args:
        home: the daemon's home (the gateway's log goes to ``home/logs/gateway.log``, its
            state to ``home/gateway.json``).
        daemon_address: where the gateway reaches the daemon (loopback).
        address: ``HOST:PORT`` of the HTTP listener (port 0: any free one).
        grpc_address: ``HOST:PORT`` of the Open Inference Protocol gRPC listener (default: the
            HTTP host, any free port).
        tls: ``(cert, key)`` PEM files: both listeners serve TLS (needed off loopback).
    """

    def __init__(self, home: Path, daemon_address: str, address: str = DEFAULT_ADDRESS,
                 grpc_address: str | None = None, tls: tuple[str, str] | None = None,
                 daemon_tls: bool = False):
        self.home = Path(home)
        self.daemon_address = daemon_address
        self.tls = tls
        self.daemon_tls = daemon_tls
        host, port = split_address(address)
        ghost, gport = split_address(grpc_address) if grpc_address else (host, 0)
        for h, flag in ((host, "--gateway-address"), (ghost, "--gateway-grpc-address")):
            if not is_loopback(h) and tls is None:
                raise DeployError(f"refusing to serve the gateway on {h} without TLS: an address other "
                                  f"than loopback needs --tls-cert FILE and --tls-key FILE ({flag})")
        self._http = _bind(host, port, "--gateway-address")
        self._http.listen(1024)
        self._http.set_inheritable(True)
        # gRPC binds its own listener: reserve a free port now, so that the published address
        # holds across restarts of the process.
        if gport == 0:
            probe = _bind(ghost, 0, "--gateway-grpc-address")
            gport = probe.getsockname()[1]
            probe.close()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{_url_host(host)}:{self._http.getsockname()[1]}"
        self.grpc_address = f"{_url_host(ghost)}:{gport}"
        self._grpc_bind = f"[{ghost}]:{gport}" if ":" in ghost else f"{ghost}:{gport}"
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "jupyter_deploy.gateway", "--daemon", self.daemon_address,
                "--fd", str(self._http.fileno()), "--url", self.url, "--grpc-address", self._grpc_bind,
                "--parent-pid", str(os.getpid())]
        if self.tls:
            argv += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        if self.daemon_tls:
            argv += ["--daemon-tls"]
        return argv

    def start(self) -> None:
        """Start the gateway process and keep it running (in a thread) until ``stop``."""
        self._thread = threading.Thread(target=self._supervise, name="gateway-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        pause = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            with open(logs / "gateway.log", "ab") as out:
                try:
                    self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=out,
                                                 stderr=subprocess.STDOUT, pass_fds=(self._http.fileno(),))
                except OSError as e:
                    log.error("cannot start the gateway: %s", e)
                    self.proc = None
            if self.proc is not None and self._stopping.is_set():  # stop() came while it started
                self.proc.terminate()
            if self.proc is not None:
                self._record()
                code = self.proc.wait()
                if self._stopping.is_set():
                    break
                log.warning("the gateway (pid %d) exited with code %s; restarting it", self.proc.pid, code)
            if time.monotonic() - started > STABLE_SECONDS:
                pause = 0
            if self._stopping.wait(BACKOFF[min(pause, len(BACKOFF) - 1)]):
                break
            pause += 1
            self.restarts += 1

    def _record(self) -> None:
        """``home/gateway.json``: what ``jupyter-deploy gateway status`` shows."""
        try:
            write_atomic(self.home / "gateway.json", json.dumps({
                "url": self.url, "grpc_address": self.grpc_address, "pid": self.proc.pid if self.proc else None,
                "daemon_pid": os.getpid(), "restarts": self.restarts, "started_at": time.time()}).encode())
        except OSError as e:
            log.warning("cannot write %s: %s", self.home / "gateway.json", e)

    def stop(self) -> None:
        """Stop the gateway (SIGTERM, then SIGKILL after ``STOP_GRACE``) and close its socket."""
        self._stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
        self._http.close()
        try:
            (self.home / "gateway.json").unlink()
        except OSError:
            pass
