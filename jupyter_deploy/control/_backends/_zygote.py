"""The daemon's end of the runner template (``runner._zygote``): starts runners by fork, in ms.

``Zygote.launch(home, env)`` starts the template process (it imports the runner's modules
in the background); ``start(...)`` asks it for one runner and returns its pid, or raises
``ZygoteUnavailable`` (not started yet, gone, or refused), after which the local backend
spawns a fresh interpreter as before. The template reaps the runners it forked and reports
each exit code here (``exit_code``), so the daemon still tells a model's failure from a crash.

Example::

    zygote = Zygote.launch(home, {"PATH": os.environ["PATH"]})
    pid, started = zygote.start(["--model-path", "m", "--port-file", "p"], env, log.fileno(),
                                pid_file="home/run/0123456789ab.pid", port_file="p")
    zygote.exit_code(pid)  # None while it runs
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
from collections import deque
from pathlib import Path

log = logging.getLogger("jupyter_deploy.scheduler")

MODULE = "jupyter_deploy.runner._zygote"
#: Environment variable that turns the template off (``off``): every runner is a fresh interpreter.
SWITCH_ENV = "JUPYTER_DEPLOY_RUNNER_ZYGOTE"
#: Seconds a start waits for the template's imports (on a loaded host they take a while; a
#: fresh interpreter would spend the same on them).
READY_TIMEOUT = 10.0
#: Seconds a start waits for the template's answer (a fork: ms) before giving up on it.
ANSWER_TIMEOUT = 5.0


class ZygoteUnavailable(Exception):
    """The template cannot start this runner (not ready, gone, or refused): spawn one instead."""


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether runners start from the template (on, unless ``JUPYTER_DEPLOY_RUNNER_ZYGOTE=off``)."""
    value = (os.environ if environ is None else environ).get(SWITCH_ENV, "")
    # Linux: a forked runner is known by its pid and start time (/proc), and the template's
    # messages keep their bounds (SOCK_SEQPACKET).
    return value.strip().lower() not in ("off", "0", "false", "no") and hasattr(socket, "SOCK_SEQPACKET") \
        and hasattr(os, "fork") and os.path.exists("/proc/self/stat")


class Zygote:
    """One template process and the thread that reads what it says."""

    def __init__(self, popen: subprocess.Popen, sock: socket.socket):
        self.popen, self._sock = popen, sock
        self._cond = threading.Condition()
        self._ready = self._gone = False
        self._answers: deque[dict] = deque()
        self._exits: dict[int, int] = {}   # pid -> exit code (Popen's convention), of runners it forked
        self._asking = threading.Lock()    # one request at a time: answers come back in order
        threading.Thread(target=self._read, name="jupyter_deploy-zygote", daemon=True).start()

    @classmethod
    def launch(cls, home: Path, env: dict[str, str]) -> Zygote:
        """Start the template with ``env`` as its environment; OSError when it cannot start."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-u", "-m", MODULE, "--fd", str(theirs.fileno()), "--home", str(home)],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(popen, ours)

    @property
    def gone(self) -> bool:
        """Whether the template has ended (or was given up on)."""
        return self._gone

    def start(self, argv: list[str], env: dict[str, str], log_fd: int, *, pid_file: Path, port_file: Path,
              cwd: Path | None = None, umask: int | None = None,
              user: tuple[int, int, tuple[int, ...]] | None = None) -> tuple[int, str]:
        """Fork a runner running ``main(argv)``; its ``(pid, start time)``.

        Raises:
            ZygoteUnavailable: the template is not ready within ``READY_TIMEOUT``, gone, or refused.
        """
        # What the runner gets goes to it alone, on a socket of its own: the template's memory, which
        # every later runner inherits, never holds a deployment's environment (its secrets).
        details = json.dumps({"argv": list(argv), "env": env, "cwd": str(cwd) if cwd else None, "umask": umask,
                              "user": [user[0], user[1], list(user[2])] if user else None}).encode()
        request = {"pid_file": str(pid_file), "port_file": str(port_file)}
        with self._asking:
            with self._cond:
                if not self._cond.wait_for(lambda: self._ready or self._gone, READY_TIMEOUT):
                    raise ZygoteUnavailable(f"the runner template is not ready after {READY_TIMEOUT:g} s")
                if self._gone:
                    raise ZygoteUnavailable("the runner template has ended")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with ours:
                try:
                    socket.send_fds(self._sock, [json.dumps(request).encode()], [log_fd, theirs.fileno()])
                except OSError as e:
                    raise ZygoteUnavailable(f"cannot reach the runner template ({e})") from None
                finally:
                    theirs.close()
                pid, started = self._answer()
                try:
                    ours.sendall(details)
                except OSError:
                    pass  # the runner ended already: its exit code says how
            return pid, started

    def _answer(self) -> tuple[int, str]:
        with self._cond:
            if not self._cond.wait_for(lambda: self._answers or self._gone, ANSWER_TIMEOUT):
                self._give_up(f"no answer within {ANSWER_TIMEOUT:g} s")
            if not self._answers:
                raise ZygoteUnavailable("the runner template has ended")
            answer = self._answers.popleft()
            if "error" in answer:
                raise ZygoteUnavailable(answer["error"])
            self._exits.pop(answer["pid"], None)  # a runner of an earlier life of this pid
            return answer["pid"], answer.get("start_time", "")

    def exit_code(self, pid: int, wait: float = 0.0) -> int | None:
        """The exit code of a runner it forked, once it ended (``wait``: seconds to wait for it)."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self._gone, wait)
            return self._exits.get(pid)

    def close(self) -> None:
        """End the template (runners it started keep running, unsupervised by it); returns at once."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # it reads EOF and exits; so does the reading thread
        except OSError:
            pass

    def _give_up(self, why: str) -> None:
        log.warning("runner template (pid %d): %s; runners start as fresh processes", self.popen.pid, why)
        self._gone = True
        self.popen.kill()
        raise ZygoteUnavailable(f"the runner template failed: {why}")

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._gone = True
                    self._cond.notify_all()
                    break
                try:
                    message = json.loads(data)
                except ValueError:
                    continue
                if "ready" in message:
                    self._ready = True
                elif "exited" in message:
                    self._exits[message["exited"]] = message["code"]
                else:
                    self._answers.append(message)
                self._cond.notify_all()
        try:
            self.popen.wait(5)  # reaped, not left a zombie
        except subprocess.TimeoutExpired:
            pass


def runs(python: str) -> bool:
    """Whether a runner of the interpreter ``python`` may be forked from the template, which runs
    the daemon's: the same executable (``python3.11`` and ``python`` link to one) in the same
    environment (a virtual environment's interpreter links to its base one, but has its own
    ``site-packages``)."""
    def venv(path: str) -> str | None:
        root = Path(os.path.abspath(path)).parent.parent
        return str(root) if (root / "pyvenv.cfg").exists() else None

    try:
        return os.path.realpath(python) == os.path.realpath(sys.executable) and venv(python) == venv(sys.executable)
    except OSError:
        return False


_prelaunched: dict[str, Zygote] = {}


def prelaunch(home: Path, env: dict[str, str]) -> None:
    """Start the template for ``home`` now, for the local backend made later to ``take``: the
    daemon does it first thing, so the template imports while the daemon does (the first
    deployment after a daemon start then forks too). Nothing happens where it is off."""
    if enabled() and str(home) not in _prelaunched:
        try:
            _prelaunched[str(home)] = Zygote.launch(home, env)
        except OSError as e:
            log.warning("cannot start the runner template (%s); runners start as fresh processes", e)


def take(home: Path) -> Zygote | None:
    """The template ``prelaunch`` started for ``home`` (once), or None."""
    return _prelaunched.pop(str(home), None)


def process_start_time(pid: int) -> str:
    """A process's start time (``/proc/<pid>/stat``), "" when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in (b"Z", b"X") else fields[19].decode()


def read_pid_file(path: Path) -> tuple[int, str, Path] | None:
    """``(pid, start time, port file)`` from a pid file the template wrote, None when unreadable."""
    try:
        pid, started, port_file = path.read_text().split(maxsplit=2)
        return int(pid), started, Path(port_file.strip())
    except (OSError, ValueError):
        return None


def wait_gone(pid: int, started: str, timeout: float) -> bool:
    """Wait until the process ``pid`` (started at ``started``) is gone; whether it is."""
    deadline = time.monotonic() + timeout
    while process_start_time(pid) == started:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
