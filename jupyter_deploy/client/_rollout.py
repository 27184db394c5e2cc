"""The one deploy path: upload if changed, create or roll out, start if stopped, wait until ready.

``Client.deploy`` (a folder, a ``model.py`` or a cell's source), ``Model.deploy`` (an
uploaded version), ``%%deploy``, ``jupyter-deploy deploy`` and the sidebar all go
through :func:`roll_out`, and all wait with :func:`wait_ready`, so "ready" means one
thing everywhere: the deployment serves its current version (and settings) with at
least ``min_replicas`` READY replicas and no older replica still takes new calls; or
it scaled to zero (IDLE), and the next call starts a replica.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ControlPlaneError, DeploymentError, ModelDefinitionError, NotFoundError
from ..ids import default_deployment_id
from ._watch import changes

if TYPE_CHECKING:
    from ._api import Client, Deployment, ModelVersionInfo


@dataclass(frozen=True)
class Readiness:
    """Where a deployment stands on its way to ready.

    ``ready`` counts the READY replicas of the current version and settings, out of
    ``current`` such replicas; ``wanted`` is ``min_replicas``.

    Example::

        Deployment("echo").wait_until_ready(progress=lambda r: print(r.state, r.ready, r.wanted))
    """

    state: str
    ready: int
    current: int
    wanted: int
    reason: str
    done: bool
    #: What each starting replica of the current version does, and for how long:
    #: ``(replica id, step, seconds)``, step one of environment, import, load_model, test.
    steps: tuple[tuple[str, str, float], ...] = ()


def readiness(deployment_id: str, status: dict, wanted: int) -> Readiness:
    """Readiness from a deployment's status and its ``min_replicas``; DeploymentError if it failed
    or rolled back."""
    state = status.get("state", "?")
    reason = status.get("reason", "")
    failure = status.get("failure")
    if status.get("rollout_failed"):
        raise DeploymentError(f"deployment {deployment_id}: the new version did not come up and was rolled "
                              "back", state, reason, failure=failure)
    if state == "FAILED":
        raise DeploymentError(f"deployment {deployment_id} failed", state, reason, failure=failure)
    replicas = status.get("replicas", [])
    current = [r for r in replicas if r.get("version_id") == status.get("version_id")
               and r.get("spec") == status.get("spec")]
    ready = sum(r.get("state") == "READY" for r in current)
    old_serving = any(r.get("state") == "READY" for r in replicas if r not in current)
    done = state == "IDLE" or (state in ("RUNNING", "UPDATING") and not old_serving and (
        ready >= wanted if wanted > 0 else state == "RUNNING"))
    steps = tuple((str(r.get("id", "")), str(r["step"].get("step", "")), float(r["step"].get("seconds", 0)))
                  for r in current if r.get("state") == "STARTING" and isinstance(r.get("step"), dict))
    return Readiness(state, ready, len(current), wanted, reason, done, steps)


#: Seconds between two progress updates while a deploy waits with nothing pushed (a replica's
#: step and its time so far live in its files, not in the store, so no change announces them).
PROGRESS_TICK = 1.0
_STEP_TEXT = {"environment": "building its environment (pip; its output is in the logs)",
              "import": "importing model.py", "load_model": "load_model()", "test": "test()"}


def wait_ready(deployment: "Deployment", timeout: float,
               progress: Callable[[Readiness], None] | None = None) -> Readiness:
    """Block until ready, re-reading the status on each pushed change; DeploymentError (with
    state, reason and log tail) on failure or after ``timeout`` seconds."""
    last: Readiness | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # With someone to tell, the stream is taken again each PROGRESS_TICK: its "synced" brings
            # a fresh status (and the time so far) even when nothing was pushed; nothing is missed.
            left = deadline - time.monotonic()
            for _ in changes(deployment.client, deployment.id, deployment.user_id,
                             min(left, PROGRESS_TICK) if progress is not None else left):
                status = deployment.status  # (refreshes the resource, and so its config)
                wanted = int(deployment.config.get("autoscale_config", {}).get("min_replicas", 1))
                last = readiness(deployment.id, status, wanted)
                if progress is not None:
                    progress(last)
                if last.done:
                    return last
    except DeploymentError as e:
        # The model's own exception says why; otherwise (a crash) its logs may.
        raise DeploymentError(str(e).split("\n  state: ")[0], e.state, e.reason,
                              None if e.failure else deployment.logs(20), failure=e.failure) from None
    state, reason = (last.state, last.reason) if last else ("?", "")
    raise DeploymentError(f"deployment {deployment.id} not ready after {timeout:g} s", state, reason,
                          deployment.logs(20))


@dataclass
class Rollout:
    """What one deploy did: the version it deployed, the action, and how ready it got.

    ``action`` is ``"create"`` (a new deployment), ``"roll out"`` (a new version or new
    settings on an existing one: new replicas start), ``"hot reload"`` (a new version whose
    only change is method bodies, swapped into the running replicas, which keep their loaded
    state), ``"restart"`` (nothing new; the deployment was stopped and is started again) or
    ``"keep"`` (nothing new, already running). ``hot_note`` says, for a new version, what
    changed (hot reload) or why it was not hot reloaded.

    Example::

        dep = Client().deploy("models/echo")
        dep.rollout.action, dep.rollout.version.number, dep.rollout.summary()
        # ('hot reload', 4, 'echo v4: deployment echo RUNNING on local/local, 1 replica, ready in
        #   0.2 s, hot reload: predict() changed (loaded state kept)')
    """

    deployment_id: str
    compute_cluster_id: str
    nodepool_id: str
    version: "ModelVersionInfo | None"
    action: str
    started: float = field(default_factory=time.monotonic)
    readiness: Readiness | None = None
    hot_note: str = ""
    #: While ``action`` is ``"upload"``: ``(bytes sent, bytes in all)`` of the model's archive.
    uploaded: tuple[int, int] | None = None
    model_id: str = ""

    @property
    def seconds(self) -> float:
        """Seconds since the deploy began."""
        return time.monotonic() - self.started

    @property
    def where(self) -> str:
        return f"{self.compute_cluster_id}/{self.nodepool_id}"

    def _what(self) -> str:
        if self.version is None:
            return self.deployment_id
        same = " (unchanged code: same version)" if self.version.deduplicated else ""
        return f"{self.version.model_id} v{self.version.number}{same}"

    def describe(self) -> str:
        """One line: what the deploy does and, while it waits, how far it got.

        Examples: ``echo v3: roll out deployment echo on local/local: STARTING, 0/1 replicas
        ready (4.2 s) - replica 3f2a9c1b0e4d: load_model() for 3.1 s``; while uploading,
        ``llm: uploading 1.2 GiB of 4.7 GiB (310.4 MiB/s, 4.1 s)``.
        """
        if self.action == "upload" and self.uploaded is not None:
            sent, total = self.uploaded
            rate = sent / max(self.seconds, 1e-6)
            return (f"{self.model_id or self.deployment_id}: uploading {_size(sent)} of {_size(total)} "
                    f"({_size(rate)}/s, {self.seconds:.1f} s)")
        line = f"{self._what()}: {self.action} deployment {self.deployment_id} on {self.where}"
        r = self.readiness
        if r is None:
            return line
        why = r.reason.split(". Last log lines:")[0].strip().splitlines()
        why_text = f" - {why[0][:120]}" if why and r.state != "RUNNING" else ""
        if r.steps and not why_text:
            why_text = " - " + "; ".join(f"replica {rid}: {_STEP_TEXT.get(step, step)} for {seconds:.0f} s"
                                         for rid, step, seconds in r.steps[:2])
        return (f"{line}: {r.state}, {r.ready}/{max(r.wanted, r.current)} replicas ready "
                f"({self.seconds:.1f} s){why_text}")

    def summary(self) -> str:
        """One line once ready, e.g. ``echo v3: deployment echo RUNNING on local/local, 1 replica,
        ready in 1.2 s``."""
        r = self.readiness
        state, ready = (r.state, r.ready) if r else ("not waited for", 0)
        line = (f"{self._what()}: deployment {self.deployment_id} {state} on {self.where}, {ready} "
                f"replica{'s' if ready != 1 else ''}, ready in {self.seconds:.1f} s")
        if self.action == "hot reload":
            return f"{line}, hot reload: {self.hot_note or 'code swapped in place'} (loaded state kept)"
        if self.action == "roll out" and self.hot_note:
            return f"{line}, new replicas (no hot reload: {self.hot_note.splitlines()[0][:160]})"
        return line

    def _hot(self, status: dict) -> None:
        """Take ``action`` and ``hot_note`` from a status's ``hot_reload`` (a rollout to a new version)."""
        note = status.get("hot_reload") or {}
        if self.action not in ("roll out", "hot reload") or note.get("version_id") != status.get("version_id"):
            return
        self.action = "hot reload" if note.get("hot") else "roll out"
        self.hot_note = note.get("why", "")


def _size(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _status(resource: Any) -> dict:
    return json.loads(resource.status_json or "{}")


def deployment_id_for(model_id: str, option: str = "deployment_id") -> str:
    """The default deployment id of a model: its own id. One that is no valid deployment id (letters
    and digits only) raises IdError saying the rule and how to give one (``option``); it is never
    renamed behind the user's back."""
    return default_deployment_id(model_id, option)


def model_folder(source: str | os.PathLike, model_id: str | None, scratch: Path) -> tuple[Path, str]:
    """The model folder for ``source`` and the model's id.

    ``source`` is a model folder, a ``model.py`` (in a model folder, or beside a
    ``config.yaml``, or alone), a cell's source text (written under ``scratch``), or what
    ``jupyter_deploy.formats`` converts: another platform's package, a ZIP.
    """
    from ..config import default_config, load_config
    from ..folder import MODEL_FILE, write_model_folder

    text = str(source)
    if isinstance(source, os.PathLike) or ("\n" not in text and Path(text).exists()):
        from ..formats import as_model_folder

        # Another platform's package, or a ZIP, becomes an ordinary folder here, on the client.
        path, model_id = as_model_folder(Path(source), model_id)
        if path.is_dir():
            return path, model_id or _configured_id(load_config(path), path)
        if path.parent.name == MODEL_FILE.parent.name and (path.parent.parent / "config.yaml").exists():
            folder = path.parent.parent
            return folder, model_id or _configured_id(load_config(folder), folder)
        config = load_config(path.parent) if (path.parent / "config.yaml").exists() else None
        model_id = model_id or _configured_id(config, path)
        requirements = path.parent / "requirements.txt"
        folder = write_model_folder(
            path.read_text(), scratch / model_id, model_id=model_id,
            config=config.to_dict() if config is not None else default_config(model_id),
            requirements=requirements.read_text() if requirements.exists() else "")
        return folder, model_id
    if "ModelClass" not in text:
        raise ModelDefinitionError(f"{text[:80]!r} is neither a model folder, a model.py, nor source code "
                                   "defining a ModelClass subclass")
    if not model_id:
        raise ValueError("give model_id when deploying source text (it has no config.yaml to read it from)")
    return write_model_folder(text, scratch / model_id, model_id=model_id, config=default_config(model_id),
                              requirements=""), model_id


def _configured_id(config: Any, where: Path) -> str:
    model = getattr(config, "model", None)
    if model is None or not getattr(model, "id", ""):
        raise ValueError(f"{where}: no model id in config.yaml; give model_id")
    return model.id


def roll_out(client: "Client", model: tuple[str, str, str], version: "ModelVersionInfo | None", *,
             deployment_id: str, nodepool_id: str | None, compute_cluster_id: str | None, wait: bool,
             timeout: float, progress: Callable[[Rollout], None] | None, config: dict,
             version_id: str | None = None, started: float | None = None,
             hot: bool | None = None) -> "Deployment":
    """Create the deployment of ``model`` (user, app, id), or roll it out, start it if stopped, and
    (``wait``) wait until ready. ``nodepool_id``/``compute_cluster_id`` None: where an existing
    deployment is, else ``local``. ``version_id`` pins that version; otherwise the latest serves
    (an older pin is lifted). ``hot``: as ``Deployment.update`` takes it, but ``True`` refuses
    with a DeploymentError (also to create a deployment: there is nothing to swap into)."""
    from ._api import Nodepool

    # Always the version asked for (version_id, else a pin the config names, else the latest):
    # a deploy never leaves an older pin in place.
    given = config.get("worker", {}).get("model", {})
    pin = version_id or given.get("model_version", {}).get("id", "")
    worker_model = {**given, "id": model[2], "user_id": model[0], "app_id": model[1],
                    "model_version": {"id": pin}}
    config = {**config, "worker": {**config.get("worker", {}), "model": worker_model}}
    deployment = client.deployment(deployment_id)
    try:
        existing = deployment.refresh().resource
    except NotFoundError:
        existing = None
    status: dict = {}
    if existing is None:
        if hot:
            raise DeploymentError(f"cannot hot reload deployment {deployment_id}: it does not exist yet (deploy "
                                  "it without hot=True first)", "", "")
        cluster, nodepool = compute_cluster_id or "local", nodepool_id or "local"
        deployment = Nodepool(nodepool, compute_cluster_id=cluster, client=client).create_deployment(
            deployment_id, **config)
        action = "create"
    else:
        cluster, nodepool = existing.compute_cluster_id, existing.nodepool_id
        if (compute_cluster_id or cluster, nodepool_id or nodepool) != (cluster, nodepool):
            raise DeploymentError(f"deployment {deployment_id} already exists on {cluster}/{nodepool}; delete "
                                  "it first, or give another deployment_id")
        before = _status(existing)
        try:
            status = _status(deployment.update(hot=hot, **config).resource)
        except ControlPlaneError as e:
            if hot and e.code == "FAILED_PRECONDITION":  # hot=True and it cannot swap: nothing changed
                raise DeploymentError(str(e), before.get("state", ""), "") from None
            raise
        stopped = status.get("desired") == "stopped"
        if stopped:
            deployment.start()
        new = (status.get("version_id"), status.get("spec")) != (before.get("version_id"), before.get("spec"))
        action = "roll out" if new else "restart" if stopped else "keep"
    rollout = Rollout(deployment_id, cluster, nodepool, version, action, started or time.monotonic())
    rollout._hot(status)
    deployment.rollout = rollout
    if progress is not None:
        progress(rollout)
    if wait:
        def step(r: Readiness) -> None:
            rollout.readiness = r
            if progress is not None:
                progress(rollout)
        wait_ready(deployment, timeout, step)
        rollout._hot(_status(deployment.resource))  # a hot reload that could not go on rolled out anew
    return deployment
