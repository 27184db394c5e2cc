"""The Ray driver of one Ray cluster: a child process of the daemon that the ``ray`` backend talks to.

Why a process of its own: a Ray driver whose cluster goes away is ended by Ray
itself (the GCS client gives up and terminates the process), and importing Ray
costs a second and a few hundred MB. So the daemon never imports Ray; this
process does, connects (``ray.init``), and answers the backend's requests over a
pipe (``multiprocessing.connection``: ``(op, kwargs)`` in, ``("ok", value)`` or
``("err", message)`` out). When the cluster goes away this process ends, and the
backend reports the outage; when the daemon goes away, the pipe closes and this
process ends (the actors it started are detached: a new daemon re-adopts them).

Each replica is a named, detached ``RunnerActor`` (``runner._ray_actor``) in the
daemon's namespace, named ``replica-<replica id>-<start>``. A background thread
keeps, for each, how it ended (``wait()``), the address it bound, why Ray has not
placed it yet, and copies what its runner wrote (output, call records, load
figures) into the daemon's files every ``PULL_INTERVAL`` seconds, where the call
log and the autoscaler read them as they read a local runner's.

    python -m jupyter_deploy.control._backends._ray_agent ADDRESS NAMESPACE READ_FD WRITE_FD
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..._wire import LOGGING_FILE, STATS_FILE
from .._replica_logs import LogFile

#: Seconds between copies of a replica's output and records to the daemon's files.
PULL_INTERVAL = 0.25
#: Seconds between the background thread's looks at its replicas.
TICK = 0.05
#: Seconds a pending actor's reason is kept before it is worked out again.
PENDING_EVERY = 1.0
#: Seconds ``list`` waits for an actor to say who it is (one that does not is not adopted).
INFO_TIMEOUT = 10.0
#: Seconds a stopped actor's runner gets to hand back its last records before the actor is killed.
TERMINATE_TIMEOUT = 3.0
#: Seconds a node gets to say which requirements it lacks (a new worker process, then a look).
MISSING_TIMEOUT = 60.0
#: Prefix of our actors' names.
PREFIX = "replica-"

log = logging.getLogger("jupyter_deploy.ray_agent")


@dataclass
class _Replica:
    rid: str
    actor: Any
    meta: dict
    name: str
    done: Any = None            # ObjectRef of wait(): ready once the runner or the actor ended
    ended: str | None = None
    address: str | None = None
    address_ref: Any = None
    pull_ref: Any = None
    next_pull: float = 0.0
    pending: str = ""
    pending_at: float = 0.0
    stopping: Any = None        # ObjectRef of terminate() while stopping
    stop_deadline: float = 0.0
    log_file: LogFile | None = None
    extra: dict = field(default_factory=dict)


def _ray():
    import ray

    return ray


class Agent:
    """The replicas this driver runs on its cluster (see the module docstring)."""

    def __init__(self, address: str, namespace: str):
        self.address, self.namespace = address, namespace
        self.ray = _ray()
        from ...runner._ray_actor import RunnerActor

        self.remote_class = self.ray.remote(RunnerActor)
        self.reps: dict[str, _Replica] = {}
        self.archives: dict[str, Any] = {}       # version id -> ObjectRef of its folder as a tar
        self.requirements: dict[tuple, list[str]] = {}
        self.lock = threading.RLock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-agent", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ requests

    def op_hello(self) -> dict:
        return {"ray_version": self.ray.__version__, "pid": os.getpid()}

    def op_nodes(self) -> list[dict]:
        """Every live node: id, IP, labels, total and available resources."""
        try:
            available = self.ray._private.state.available_resources_per_node()
        except Exception:  # noqa: BLE001 - a private API: without it, nodes say nothing free
            available = {}
        out = []
        for n in self.ray.nodes():
            if not n.get("Alive"):
                continue
            labels = {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/")}
            out.append({"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress", ""), "labels": labels,
                        "resources": dict(n.get("Resources") or {}),
                        "available": dict(available.get(n["NodeID"], {}))})
        return out

    def op_start(self, rid: str, meta: dict, model_path: str, args: list[str], env: dict[str, str],
                 options: dict, requirements: str) -> str:
        """Create the replica's actor (Ray places it in the background); its name."""
        with self.lock:
            old = self.reps.pop(rid, None)
        if old is not None:
            self._kill(old)
        archive = self._archive(meta["version_id"], Path(model_path))
        notes = []
        missing = self._missing(requirements, options.get("label_selector") or {}) if requirements else []
        if missing:
            options = {**options, "runtime_env": {"pip": missing}}
            notes.append(f"Ray runtime_env pip: {', '.join(missing)} (not in the cluster's environment)")
        name = f"{PREFIX}{rid}-{uuid.uuid4().hex[:6]}"
        actor = self.remote_class.options(name=name, namespace=self.namespace, lifetime="detached",
                                          max_concurrency=8, max_restarts=0, **options).remote(meta, archive,
                                                                                                 args, env)
        rep = _Replica(rid, actor, dict(meta), name)
        rep.done = actor.wait.remote()
        rep.address_ref = actor.address.remote()
        rep.log_file = LogFile(Path(meta["log"]), int(meta.get("log_max_bytes") or 5 << 20))
        with self.lock:
            self.reps[rid] = rep
            # Versions no replica runs any more leave the object store (an actor still being created
            # holds its own reference to its argument until it is).
            used = {r.meta.get("version_id") for r in self.reps.values()}
            for version_id in [v for v in self.archives if v not in used]:
                del self.archives[version_id]
        return "; ".join(notes)

    def op_status(self, rid: str) -> dict:
        """``{"ended", "address", "pending"}`` of a replica, as the background thread last saw it."""
        with self.lock:
            rep = self.reps.get(rid)
            if rep is None:
                return {"ended": "its Ray actor is unknown to the Ray driver", "address": None, "pending": ""}
            return {"ended": rep.ended, "address": rep.address, "pending": rep.pending}

    def op_drain(self, rid: str) -> None:
        with self.lock:
            rep = self.reps.get(rid)
        if rep is not None and rep.ended is None:
            rep.actor.drain.remote()

    def op_stop(self, rid: str) -> None:
        """Kill the runner (its last records are copied first, within ``TERMINATE_TIMEOUT``), then the actor."""
        with self.lock:
            rep = self.reps.get(rid)
            if rep is None or rep.stopping is not None:
                return
            if rep.address is None and rep.ended is None:
                # Never placed, or still loading: nothing to hand back.
                self.reps.pop(rid)
                self._kill(rep)
                return
            rep.stopping = rep.actor.terminate.remote(self._logging_text(rep))
            rep.stop_deadline = time.monotonic() + TERMINATE_TIMEOUT

    def op_list(self) -> list[dict]:
        """Every live actor of ours (started by this driver or an earlier one): ``meta`` with its address.

        Only the newest actor of a replica is kept; older ones, and ones that do not answer, are killed.
        """
        found: dict[str, tuple[Any, dict]] = {}
        for name in self.ray.util.list_named_actors():
            if not name.startswith(PREFIX):
                continue
            try:
                actor = self.ray.get_actor(name, namespace=self.namespace)
                info = self.ray.get(actor.info.remote(), timeout=INFO_TIMEOUT)
            except Exception as e:  # noqa: BLE001 - gone meanwhile, or hung: not adoptable
                log.warning("Ray actor %s does not answer (%s); killing it", name, e)
                self._kill_named(name)
                continue
            info["name"] = name
            rid = info["replica_id"]
            if rid in found:
                older, newer = sorted([found[rid], (actor, info)], key=lambda x: x[1].get("started", 0))
                self._kill_actor(older[0])
                found[rid] = newer
            else:
                found[rid] = (actor, info)
        with self.lock:
            for rid, (actor, info) in found.items():
                if rid in self.reps:
                    continue
                rep = _Replica(rid, actor, info, info["name"], address=info.get("address"))
                rep.done = actor.wait.remote()
                if rep.address is None:
                    rep.address_ref = actor.address.remote()
                rep.log_file = LogFile(Path(info["log"]), int(info.get("log_max_bytes") or 5 << 20))
                self.reps[rid] = rep
        return [{**info, "address": info.get("address")} for _, info in found.values()]

    def op_forget_others(self, keep: list[str]) -> int:
        """Kill every actor of ours whose replica is not in ``keep`` (after an outage); how many."""
        keep_set, killed = set(keep), 0
        for name in self.ray.util.list_named_actors():
            if name.startswith(PREFIX) and name[len(PREFIX):].rsplit("-", 1)[0] not in keep_set:
                self._kill_named(name)
                killed += 1
        return killed

    def op_missing(self, requirements: str, label_selector: dict) -> list[str]:
        return self._missing(requirements, label_selector)

    # ------------------------------------------------------------ helpers

    def _archive(self, version_id: str, folder: Path) -> Any:
        """The version's folder in Ray's object store (put once per version by this driver)."""
        if version_id not in self.archives:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for path in sorted(folder.rglob("*")):
                    if "__pycache__" in path.parts:
                        continue
                    tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
            self.archives[version_id] = self.ray.put(buf.getvalue())
        return self.archives[version_id]

    def _missing(self, requirements: str, label_selector: dict) -> list[str]:
        """The requirement lines the pool's nodes' Python lacks (asked on one of them, cached)."""
        key = (requirements, tuple(sorted(label_selector.items())))
        if key not in self.requirements:
            task = self.ray.remote(_missing_requirements).options(num_cpus=0, label_selector=label_selector or None)
            self.requirements[key] = self.ray.get(task.remote(requirements), timeout=MISSING_TIMEOUT)
        return self.requirements[key]

    def _kill(self, rep: _Replica) -> None:
        self._kill_actor(rep.actor)

    def _kill_actor(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass

    def _kill_named(self, name: str) -> None:
        try:
            self._kill_actor(self.ray.get_actor(name, namespace=self.namespace))
        except Exception:  # noqa: BLE001, S110 - already gone
            pass

    @staticmethod
    def _logging_text(rep: _Replica) -> str | None:
        try:
            return (Path(rep.meta["telemetry"]).parent / LOGGING_FILE).read_text()
        except OSError:
            return None

    # ------------------------------------------------------------ the background thread

    def _loop(self) -> None:
        while not self._halt.wait(TICK):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - keep watching; the next tick retries
                log.exception("ray agent tick failed")

    def _tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            reps = list(self.reps.values())
        refs = {}
        for rep in reps:
            for kind in ("done", "address_ref", "pull_ref", "stopping"):
                ref = getattr(rep, kind)
                if ref is not None:
                    refs[ref] = (rep, kind)
        ready = set()
        if refs:
            ready = set(self.ray.wait(list(refs), num_returns=len(refs), timeout=0)[0])
        for ref in ready:
            rep, kind = refs[ref]
            getattr(self, f"_on_{kind}")(rep, ref)
        for rep in reps:
            if rep.stopping is not None:
                if now >= rep.stop_deadline:
                    self._finish_stop(rep)
                continue
            if rep.ended is None and rep.pull_ref is None and now >= rep.next_pull and rep.address is not None:
                rep.pull_ref = rep.actor.pull.remote(self._logging_text(rep))
            if rep.address is None and rep.ended is None and now - rep.pending_at >= PENDING_EVERY:
                rep.pending_at = now
                rep.pending = self._pending(rep)

    def _on_done(self, rep: _Replica, ref: Any) -> None:
        rep.done = None
        try:
            ended = self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - the actor died (worker killed, node gone, setup failed)
            ended = describe_failure(e)
        rep.ended, rep.pending = ended, ""
        rep.address_ref = None
        if rep.address is not None and rep.stopping is None:
            # Its last output: the runner said why it stopped (the actor may still answer).
            rep.pull_ref = rep.pull_ref or rep.actor.pull.remote(None)

    def _on_address_ref(self, rep: _Replica, ref: Any) -> None:
        rep.address_ref = None
        try:
            address = self.ray.get(ref)
        except Exception:  # noqa: BLE001 - the actor died: ``done`` says how
            return
        if address is None:
            if rep.ended is None:
                rep.address_ref = rep.actor.address.remote()  # asked again next tick
        else:
            rep.address, rep.pending = address, ""

    def _on_pull_ref(self, rep: _Replica, ref: Any) -> None:
        rep.pull_ref = None
        rep.next_pull = time.monotonic() + PULL_INTERVAL
        try:
            self._store(rep, self.ray.get(ref))
        except Exception:  # noqa: BLE001, S110 - the actor is gone: ``done`` says how
            pass

    def _on_stopping(self, rep: _Replica, ref: Any) -> None:
        try:
            self._store(rep, self.ray.get(ref))
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        self._finish_stop(rep)

    def _finish_stop(self, rep: _Replica) -> None:
        self._kill(rep)
        with self.lock:
            if self.reps.get(rep.rid) is rep:
                del self.reps[rep.rid]

    def _store(self, rep: _Replica, pulled: dict) -> None:
        """Append what a runner wrote to the daemon's log and telemetry folder."""
        if pulled.get("log") and rep.log_file is not None:
            with rep.log_file.open() as out:
                out.write(pulled["log"])
        folder = Path(rep.meta["telemetry"])
        if pulled.get("segments") or pulled.get("stats"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, data in pulled.get("segments") or ():
            with open(folder / name, "ab") as out:
                out.write(data)
        if pulled.get("stats"):
            tmp = folder / f".{STATS_FILE}.tmp"
            tmp.write_text(pulled["stats"])
            os.replace(tmp, folder / STATS_FILE)

    def _pending(self, rep: _Replica) -> str:
        """Why Ray has not placed the actor yet ("" once it has, or when it cannot tell)."""
        try:
            info = self.ray._private.state.actors(actor_id=rep.actor._actor_id.hex())
        except Exception:  # noqa: BLE001 - a private API: say nothing rather than guess
            return ""
        if (info or {}).get("State") not in ("PENDING_CREATION", "DEPENDENCIES_UNREADY"):
            return ""
        return waiting_reason(rep.meta.get("request") or {}, self.op_nodes(), rep.meta.get("pool", ""))


def describe_failure(e: BaseException) -> str:
    """How a Ray actor ended, from the exception its call raised, in a line."""
    text = str(e)
    lower = text.lower()
    if "runtimeenv" in type(e).__name__.lower() or "runtime_env" in lower and "setup" in lower:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        return f"its Ray runtime_env could not be set up: {detail[:500]}"
    if "worker process has died" in lower or "worker unexpectedly exits" in lower:
        return "its Ray actor's worker process died"
    if "node" in lower and ("has died" in lower or "is dead" in lower) and "its node" in lower:
        return "its Ray node died"
    if "ray.kill" in lower:
        return "its Ray actor was killed"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"its Ray actor failed: {type(e).__name__}: {first[:300]}"


def waiting_reason(request: dict, nodes: list[dict], pool: str) -> str:
    """"waiting for room on Ray: ..." naming what one replica asks for and what the pool's nodes have free."""
    selector = request.get("label_selector") or {}
    chosen = [n for n in nodes if all(n["labels"].get(k) == v for k, v in selector.items())]
    asks = []
    if request.get("num_gpus"):
        asks.append(f"{request['num_gpus']:g} GPU")
    if request.get("accelerator_type"):
        asks.append(f"of type {request['accelerator_type']}")
    asks.append(f"{request.get('num_cpus', 0):g} CPU")
    if request.get("memory"):
        asks.append(f"{request['memory'] / 2**30:.1f} GiB memory")
    free = "; ".join(f"node {n['node_id'][:8]}: {n['available'].get('GPU', 0):g} GPU, "
                     f"{n['available'].get('CPU', 0):g} CPU free" for n in chosen) or "no node"
    where = f"nodepool {pool}" if pool else "the pool"
    return f"waiting for room on the Ray cluster: a replica needs {' '.join(asks)}; {where} has {free}"


def _missing_requirements(text: str) -> list[str]:
    """(Runs on a Ray node.) The lines of a requirements.txt this node's Python does not satisfy."""
    import tempfile

    from jupyter_deploy.environment import missing_requirements

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_text(text)
        return missing_requirements(path)


def main(argv: list[str]) -> int:
    address, namespace, rfd, wfd = argv
    conn_in, conn_out = Connection(int(rfd), writable=False), Connection(int(wfd), readable=False)
    logging.basicConfig(level=logging.WARNING, format="jupyter_deploy ray agent: %(message)s")
    try:
        ray = _ray()
        ray.init(address=address, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
        agent = Agent(address, namespace)
    except Exception as e:  # noqa: BLE001 - reported to the daemon, which names the address
        conn_out.send(("err", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"))
        return 1
    conn_out.send(("ok", agent.op_hello()))
    while True:
        try:
            op, kwargs = conn_in.recv()
        except (EOFError, OSError):
            return 0  # the daemon is gone; our actors are detached and keep serving
        try:
            reply = ("ok", getattr(agent, f"op_{op}")(**kwargs))
        except Exception as e:  # noqa: BLE001 - one failed request is the backend's to report
            reply = ("err", f"{type(e).__name__}: {e}")
        try:
            conn_out.send(reply)
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
