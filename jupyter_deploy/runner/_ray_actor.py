"""One replica on a Ray node: the actor the ``ray`` nodepool backend starts (``control._backends.ray``).

Ray places the actor (CPUs, GPUs, memory, node labels) and ships it the version's
folder as bytes through its object store; the actor unpacks them on its node and
runs the ordinary runner, ``python -m jupyter_deploy.runner``, as its child, bound
to the node's IP address. The runner is the same process a local replica is (route
tokens, health, batcher, transformer, limits); only what the control plane reads
from a local runner's files comes back through actor methods instead, since the
control plane's home folder is on another machine:

- ``address()``: the ``IP:PORT`` the runner bound (from its port file);
- ``wait()``: blocks until the runner exits, and says how it ended;
- ``pull(logging)``: the runner's new output, its new call records and its latest
  load figures (``runner._telemetry`` writes them to a folder on this node), and
  takes the inference logger's settings the other way.

Ray sets ``CUDA_VISIBLE_DEVICES`` for the GPUs it gave the actor; the runner
inherits it. The runner exits on its own when the actor's worker process dies
(``PARENT_ENV``), so a ``kill -9`` of the worker leaves no runner behind.

Everything here lives under ``<tmp>/jupyter_deploy-ray/<namespace>/`` on the node:
``versions/<version id>/`` (unpacked once per node) and ``replicas/<replica id>/``.
This module imports nothing of Ray: the backend wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from .._wire import LOGGING_FILE, SEGMENT_SUFFIX, STATS_FILE, TELEMETRY_ENV
from ._limits import describe_exit

#: The runner exits when its parent process (this actor's worker) is no longer this pid.
PARENT_ENV = "JUPYTER_DEPLOY_PARENT_PID"
#: The Ray node a replica runs on, for the model (its logs, its own placement decisions).
NODE_ENV = "JUPYTER_DEPLOY_RAY_NODE_ID"
#: Bytes of output or records one ``pull`` returns at most (the rest comes with the next).
PULL_CHUNK = 8 << 20
#: Variables of the control plane's host that mean nothing on a node (set here instead).
HOST_ONLY_ENV = ("MODEL_PATH", TELEMETRY_ENV, "CUDA_VISIBLE_DEVICES", "JUPYTER_DEPLOY_ENVS", "JUPYTER_DEPLOY_HOME")


def node_root(namespace: str) -> Path:
    """Where a namespace's versions and replicas live on a node."""
    return Path(tempfile.gettempdir()) / "jupyter_deploy-ray" / namespace


def unpack(archive: bytes, root: Path, version_id: str) -> Path:
    """The version's folder on this node, unpacked from ``archive`` (a tar) the first time."""
    final = root / "versions" / version_id
    if (final / "config.yaml").exists() or (final / "1").exists():
        return final
    tmp = root / "versions" / f".{version_id}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        tar.extractall(tmp, filter="data")
    try:
        os.rename(tmp, final)  # atomic: another replica on this node never sees half a folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # that other replica unpacked it first
    return final


class RunnerActor:
    """A runner process on this node, and what the control plane needs to read of it.

    Args:
        meta: what the backend needs back after a daemon restart (``replica_id``,
            ``namespace``, ``version_id``, the control plane's paths for this replica).
        archive: the version's folder as a tar (Ray resolves the object reference).
        args: the runner's flags after ``--model-path``, ``--address`` and ``--port-file``.
        env: the runner's own variables (route token key, deployment id, secrets, ...).
    """

    def __init__(self, meta: dict, archive: bytes, args: list[str], env: dict[str, str]):
        import ray

        self.meta = dict(meta)
        rid = meta["replica_id"]
        root = node_root(meta["namespace"])
        self.dir = root / "replicas" / rid
        shutil.rmtree(self.dir, ignore_errors=True)
        self.telemetry = self.dir / "telemetry" / "replica"
        self.telemetry.mkdir(parents=True)
        self.port_file = self.dir / "port"
        model = unpack(archive, root, meta["version_id"])
        context = ray.get_runtime_context()
        self.ip = ray.util.get_node_ip_address()
        self.meta.update(node_id=context.get_node_id(), node_ip=self.ip, pid=os.getpid(),
                         started=time.time())
        own = {k: v for k, v in env.items() if k not in HOST_ONLY_ENV}
        runner_env = {**os.environ, **own, "MODEL_PATH": str(model), TELEMETRY_ENV: str(self.telemetry),
                      "JUPYTER_DEPLOY_HOME": str(root / "home"), "PYTHONUNBUFFERED": "1",
                      PARENT_ENV: str(os.getpid()), NODE_ENV: self.meta["node_id"]}
        cmd = [sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(model),
               "--address", f"{self.ip}:0", "--port-file", str(self.port_file), *args]
        self._log_path = self.dir / "runner.log"
        with open(self._log_path, "ab") as out:
            gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "") or "none"
            out.write(f"jupyter_deploy ray: replica {rid} on node {self.meta['node_id'][:12]} ({self.ip}), "
                      f"actor worker pid {os.getpid()}, GPUs from Ray: {gpus}, python {sys.executable}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          env=runner_env, start_new_session=True)
        self._offsets: dict[str, int] = {}
        self._logging = ""
        self._stats_seen = 0.0
        self._lock = threading.Lock()  # one pull at a time: offsets move forward once

    def info(self) -> dict:
        """``meta`` with the node, its IP, the worker's pid, and the address once bound."""
        return {**self.meta, "address": self.address()}

    def address(self) -> str | None:
        """``IP:PORT`` of the runner's gRPC server; None until it listens."""
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return f"{self.ip}:{port}"

    def wait(self) -> str:
        """Block until the runner exits; how it ended, in words."""
        return describe_exit(self.popen.wait())

    def drain(self) -> None:
        """Ask the runner to finish its calls and exit (SIGTERM, as on the local backend)."""
        self._signal(signal.SIGTERM)

    def terminate(self, logging: str | None = None) -> dict:
        """Kill the runner now and hand back what it wrote since the last ``pull``; its folder on
        this node goes (the version's stays, for the next replica here)."""
        self._signal(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        last = self.pull(logging)
        shutil.rmtree(self.dir, ignore_errors=True)
        return last

    def pull(self, logging: str | None = None) -> dict:
        """What the runner wrote since the last pull: ``{"log": bytes, "segments": [(name, bytes)],
        "stats": str | None, "ended": str | None}``; ``logging`` (the deployment's inference logger
        settings, JSON) is written where the runner reads it when it changed."""
        with self._lock:
            if logging is not None and logging != self._logging:
                tmp = self.telemetry.parent / f".{LOGGING_FILE}.tmp"
                tmp.write_text(logging)
                os.replace(tmp, self.telemetry.parent / LOGGING_FILE)
                self._logging = logging
            out: dict = {"log": self._read_new(self._log_path), "segments": [], "stats": None}
            segments = sorted(p for p in self.telemetry.glob("*" + SEGMENT_SUFFIX) if p.stem.isdigit())
            for i, seg in enumerate(segments):
                data = self._read_new(seg, whole_lines=True)
                if data:
                    out["segments"].append((seg.name, data))
                if i < len(segments) - 1 and self._offsets.get(str(seg), 0) >= seg.stat().st_size:
                    seg.unlink(missing_ok=True)  # read to its end, and the runner writes a newer one
                    self._offsets.pop(str(seg), None)
            stats = self.telemetry / STATS_FILE
            try:
                mtime = stats.stat().st_mtime
                if mtime != self._stats_seen:
                    out["stats"], self._stats_seen = stats.read_text(), mtime
            except OSError:
                pass
            code = self.popen.poll()
            out["ended"] = None if code is None else describe_exit(code)
            return out

    def _read_new(self, path: Path, whole_lines: bool = False) -> bytes:
        offset = self._offsets.get(str(path), 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(PULL_CHUNK)
        except OSError:
            return b""
        if whole_lines:  # a record the runner is still writing comes with the next pull
            data = data[:data.rfind(b"\n") + 1]
        self._offsets[str(path)] = offset + len(data)
        return data

    def _signal(self, sig: int) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)  # its own session: whatever the model started goes too
        except ProcessLookupError:
            pass
