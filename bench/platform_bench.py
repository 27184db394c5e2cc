"""The platform column of ``bench/run.py``: the bench model deployed through the control plane.

(Not ``bench/platform.py``: ``python bench/run.py`` puts ``bench/`` first on ``sys.path``,
where that name would hide the standard library's ``platform`` module.)

``PlatformSession`` starts a control plane daemon under a temporary
``JUPYTER_DEPLOY_HOME`` (the first ``Client()`` starts it), uploads
``bench/models/bench``, measures cold starts (W4), and deploys the model once for
the steady-state workloads. ``PlatformTarget`` calls it the way a user does:
``client.model("bench").echo(...)``, the route resolved once through the daemon and
cached, then straight to the runner with the route token. ``close()`` stops the
daemon and its runners, kills whatever is left under the temporary home (by pid),
removes the home and restores the environment, however the run ended.

Example::

    with PlatformSession(MODEL_DIR) as plat:
        parts = plat.cold_start("bench1"); plat.delete("bench1")
        plat.deploy("bench")
        t = plat.target(); t.echo("x" * 100); t.close()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOME_ENV = "JUPYTER_DEPLOY_HOME"
#: Variables that would point the bench's Client at another daemon or identity.
_ISOLATE_ENV = ("JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT")
MODEL_ID = "bench"            # from bench/models/bench/config.yaml
NODEPOOL = ("local", "local")  # (compute_cluster_id, nodepool_id): this host
POLL_S = 0.05                 # seconds between checks while waiting for a deletion or IDLE
IDLE_AFTER_S = 1              # W4 from IDLE: scale_to_zero_delay_seconds of its deployment
STOP_TIMEOUT = 60.0           # seconds the daemon gets to stop with its runners


def _install_call_deadline(seconds: float) -> None:
    """Give every routed Model call a deadline (bench-only shim).

    ``Model`` methods carry no deadline: ``_RoutedTransport._current`` builds
    ``GrpcTransport(stub, None, ...)``. The benchmark rule is that every request has a
    timeout, as the floor and runner calls do, so the transport it builds is given one.
    It looks ``GrpcTransport`` up at call time, so a subclass in that module's globals
    is enough; route renewals keep it.
    """
    from jupyter_deploy.client import _api
    from jupyter_deploy.client._runner_client import GrpcTransport

    if getattr(_api.GrpcTransport, "_bench_deadline", None) == seconds:
        return

    class DeadlineTransport(GrpcTransport):
        _bench_deadline = seconds

        def __init__(self, stub: Any, timeout: float | None, metadata: Any = None):
            super().__init__(stub, seconds if timeout is None else timeout, metadata)

    _api.GrpcTransport = DeadlineTransport


class PlatformTarget:
    """The bench model through ``Client`` -> ``Model`` (route cached), with its own Client."""

    name = "platform"

    def __init__(self, deployment_id: str | None = None) -> None:
        import functools

        from jupyter_deploy import Client

        self._client = Client()  # finds the session's daemon through JUPYTER_DEPLOY_HOME
        model = self._client.model(MODEL_ID)
        # Bound once, as RunnerTarget does. No routing keywords: the model's only
        # deployment is its default, the usual ``model.predict(x)`` (with ``deployment_id``,
        # that deployment's: the Ray column beside the local one). The first call
        # resolves the route through the daemon; later calls reuse it.
        route = {"deployment_id": deployment_id} if deployment_id else {}
        self._echo = functools.partial(model.echo, **route)
        self._chunks = functools.partial(model.chunks, **route)
        self._image = functools.partial(model.image_size, **route)
        self.model = model

    def echo(self, text: str) -> str:
        return self._echo(text)

    def chunks(self, n: int) -> Iterator[str]:
        return self._chunks(n)

    def image_size(self, data: bytes) -> tuple[int, int]:
        out = self._image(data)
        return out["width"], out["height"]

    def close(self) -> None:
        self._client.close()


class PlatformSession:
    """A daemon under a temporary home with the bench model uploaded; a context manager."""

    def __init__(self, model_dir: Path, *, call_timeout: float, ready_timeout: float,
                 env: dict[str, str] | None = None):
        self.home = Path(tempfile.mkdtemp(prefix="jdbench-home-"))
        self.ready_timeout = ready_timeout
        env = env or {}  # for the daemon it starts (and so its runners), e.g. JUPYTER_DEPLOY_CALL_LOG=off
        self._saved_env = {k: os.environ.get(k) for k in (HOME_ENV, *_ISOLATE_ENV, *env)}
        os.environ[HOME_ENV] = str(self.home)
        for k in _ISOLATE_ENV:
            os.environ.pop(k, None)
        os.environ.update(env)
        self.client: Any = None
        self.timings: dict[str, float] = {}
        try:
            _install_call_deadline(call_timeout)
            from jupyter_deploy import Client, Nodepool

            t0 = time.perf_counter()
            self.client = Client()
            t1 = time.perf_counter()
            self.version = self.client.upload_model(model_dir)
            t2 = time.perf_counter()
            self.timings = {"daemon start s": t1 - t0, "upload s": t2 - t1}
            self.nodepool = Nodepool(NODEPOOL[1], compute_cluster_id=NODEPOOL[0], client=self.client)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "PlatformSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ deployments

    def deploy(self, deployment_id: str, nodepool: Any = None, **config: Any) -> Any:
        d = (nodepool or self.nodepool).create_deployment(deployment_id, worker={"model": {"id": MODEL_ID}},
                                                          **config)
        return d.wait_until_ready(self.ready_timeout)

    def delete(self, deployment_id: str) -> float:
        """Delete a deployment and wait until it is gone (its replicas stopped); seconds taken."""
        t0 = time.perf_counter()
        self.client.deployment(deployment_id).delete()
        deadline = time.monotonic() + self.ready_timeout
        while any(d.id == deployment_id for d in self.client.list_deployments()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment {deployment_id} still listed {self.ready_timeout:g} s "
                                   f"after its deletion")
            time.sleep(POLL_S)
        return time.perf_counter() - t0

    def cold_start(self, deployment_id: str, payload: str, nodepool: Any = None) -> dict[str, float]:
        """W4: ``create_deployment`` to the first successful predict, and its parts (seconds).

        What a user runs: create, ``wait_until_ready()`` (which polls the status every
        0.1 s), then a fresh ``Model`` (signatures from the registry) and its first call
        (ResolveRoute, a new channel to the runner, the call).
        """
        t0 = time.perf_counter()
        d = (nodepool or self.nodepool).create_deployment(deployment_id, worker={"model": {"id": MODEL_ID}})
        t1 = time.perf_counter()
        d.wait_until_ready(self.ready_timeout)
        t2 = time.perf_counter()
        out = self.client.model(MODEL_ID).echo(payload, deployment_id=deployment_id)
        t3 = time.perf_counter()
        if out != payload:
            raise AssertionError(f"W4: the first call returned {out!r}")
        return {"W4 total s": t3 - t0, "W4 create call s": t1 - t0, "W4 to RUNNING s": t2 - t0,
                "W4 first call s": t3 - t2}

    def cold_starts_from_idle(self, deployment_id: str, payload: str, runs: int) -> dict[str, list[float]]:
        """W4 from IDLE: a deployment with ``min_replicas: 0`` scaled to zero, then a call to it (seconds).

        The same ``Model`` calls every time, as a notebook that called before would: its cached
        route points at a runner that is gone, the call re-resolves, the daemon starts a replica
        and the call waits for it. Also the daemon's own figure (wake -> a READY replica), as the
        deployment's status and card show it. The deployment is deleted at the end.
        """
        d = self.nodepool.create_deployment(
            deployment_id, worker={"model": {"id": MODEL_ID}}, drain_seconds=0,
            autoscale_config={"min_replicas": 0, "max_replicas": 1, "scale_to_zero_delay_seconds": IDLE_AFTER_S})
        d.wait_until_ready(self.ready_timeout)
        model = self.client.model(MODEL_ID)
        model.echo(payload, deployment_id=deployment_id)  # a cached route, as after earlier use
        out: dict[str, list[float]] = {"W4 from IDLE s": [], "W4 from IDLE, wake → READY s": []}
        for _ in range(runs):
            deadline = time.monotonic() + self.ready_timeout
            while d.status["state"] != "IDLE" or d.status["replicas"]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{deployment_id} did not scale to zero in {self.ready_timeout:g} s")
                time.sleep(POLL_S)
            t0 = time.perf_counter()
            answer = model.echo(payload, deployment_id=deployment_id)
            out["W4 from IDLE s"].append(time.perf_counter() - t0)
            if answer != payload:
                raise AssertionError(f"W4 from IDLE: the call returned {answer!r}")
            out["W4 from IDLE, wake → READY s"].append(d.status["autoscale"]["last_cold_start_seconds"])
        self.delete(deployment_id)
        return out

    def target(self, deployment_id: str | None = None) -> PlatformTarget:
        return PlatformTarget(deployment_id)

    # ------------------------------------------------------------ teardown

    def _leftovers(self) -> list[int]:
        """Pids of processes whose command line names the temporary home (daemon, runners)."""
        try:
            out = subprocess.run(["pgrep", "-f", str(self.home)], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]

    def close(self) -> None:
        try:
            if self.client is not None:
                from jupyter_deploy.client._daemon import stop

                address = self.client.address
                self.client.close()
                self.client = None
                try:
                    stop(address=address, timeout=STOP_TIMEOUT)
                except Exception as e:  # noqa: BLE001 - the kill below still runs
                    print(f"platform: the daemon did not stop cleanly: {e}", flush=True)
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = self._leftovers()
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 5
                while pids and self._leftovers() and time.monotonic() < deadline:
                    time.sleep(0.1)
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(self.home, ignore_errors=True)
