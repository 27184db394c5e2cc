"""Hot reload (issue 17): re-deploying a changed ``predict`` of a model that is slow to load.

    python bench/hot_reload.py [--quick] [--record] [--repeats N] [--load-seconds S] [--callers N]

A daemon in a temporary ``JUPYTER_DEPLOY_HOME`` (started by the first ``Client()``, from
this interpreter), and a model whose ``load_model`` sleeps ``S`` seconds (10) and then sets
``self.weights`` to a random token; ``predict`` returns ``"<tag>|<weights>"``, the tag
written in its body. Deployed once; then ``N`` callers (8 threads of a process of their own)
call ``predict`` in a closed loop (no pause), each answer recorded with its time, and ``repeats`` times the
tag in ``predict``'s body is changed and the model deployed again:

- through ``Client.deploy(folder)`` (the Python API; the upload included), and
- through ``%%deploy`` in an IPython shell in this process (the cell check and the
  signature subprocess included), for a second model of the same kind.

Measured from the start of each re-deploy: the first answer any caller got from the new
code, and the re-deploy returning (ready). Checked each time: the rollout was a hot
reload, the weights (and the replica's pid) did not change. Failed calls are counted over
the whole run. For reference: one ordinary rollout of the same change (``hot=False``: new
replicas, ``load_model`` again) and the first deploy. Targets: first answer from the new
code < 1 s, 0 failed calls.

At the end the daemon is stopped (``python -m jupyter_deploy stop``) and whatever still
names the temporary folder is killed by pid (``notebook_bench.teardown``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
OUT_DIR = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"
CALL_TIMEOUT = 60.0     # seconds one predict may take
DEPLOY_TIMEOUT = 300.0  # seconds one deploy may take

SOURCE = '''
import secrets
import time

from jupyter_deploy import ModelClass


class Slow(ModelClass):
    def load_model(self):
        time.sleep({load})  # weights that take a while to load
        self.weights = secrets.token_hex(8)

    @ModelClass.method
    def predict(self, text: str) -> str:
        return "{tag}|" + self.weights

    def test(self):
        assert self.predict("x").startswith("{tag}|")
'''


def source(tag: str, load: float) -> str:
    return SOURCE.format(tag=tag, load=load)


#: The callers' process: ``n`` threads calling ``predict`` in a closed loop, each answer written
#: as ``<monotonic time> <tag>`` (a failure as ``<time> !<error>``) to a file, until SIGTERM.
CALLERS = r"""
import signal, sys, threading, time
from jupyter_deploy import Client, Model

model_id, n, out = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "a", buffering=1)
stop, lock = threading.Event(), threading.Lock()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
model = Model(model_id=model_id, client=Client())
model.predict("x")


def run():
    while not stop.is_set():
        try:
            line = model.predict("x").split("|")[0]
        except Exception as e:
            line = "!" + f"{type(e).__name__}: {e}".replace(chr(10), " ")[:300]
            time.sleep(0.01)
        with lock:
            out.write(f"{time.monotonic()} {line}\n")


threads = [threading.Thread(target=run) for _ in range(n)]
for t in threads:
    t.start()
print("calling", flush=True)
for t in threads:
    t.join()
"""


class Callers:
    """``n`` callers of ``predict`` in a process of their own (the deploying process is then as
    free as a notebook kernel is of other users' calls), every answer kept with its time
    (``time.monotonic`` is the same clock in both processes)."""

    def __init__(self, model_id: str, n: int, folder: Path):
        self.file = folder / f"calls-{model_id}-{time.monotonic_ns()}.txt"
        self.file.touch()
        self.proc = subprocess.Popen([sys.executable, "-c", CALLERS, model_id, str(n), str(self.file)],
                                     stdout=subprocess.PIPE, text=True)
        ready = threading.Event()
        threading.Thread(target=lambda: (self.proc.stdout.readline(), ready.set()), daemon=True).start()
        if not ready.wait(CALL_TIMEOUT):
            self.close()
            raise SystemExit("the callers did not start")

    def _lines(self) -> list[tuple[float, str]]:
        out = []
        for line in self.file.read_text().splitlines():
            t, _, tag = line.partition(" ")
            try:
                out.append((float(t), tag))
            except ValueError:
                pass  # a line being written
        return out

    @property
    def answers(self) -> list[tuple[float, str]]:
        return [(t, tag) for t, tag in self._lines() if not tag.startswith("!")]

    @property
    def failures(self) -> list[tuple[float, str]]:
        return [(t, tag[1:]) for t, tag in self._lines() if tag.startswith("!")]

    def first(self, tag: str, since: float, timeout: float = 30.0) -> float | None:
        """Seconds from ``since`` to the first answer carrying ``tag`` (waiting up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t, got in self.answers if got == tag and t >= since]
            if hits:
                return min(hits) - since
            time.sleep(0.02)
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(CALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def weights_and_pid(deployment: Any, model: Any) -> tuple[str, list[int]]:
    return model.predict("x").split("|")[1], sorted(r["pid"] for r in deployment.status["replicas"])


def measure(name: str, redeploy: Callable[[str], Any], model_id: str, deployment_id: str, client: Any,
            repeats: int, callers: int, folder: Path) -> dict[str, Any]:
    """``repeats`` re-deploys through ``redeploy(tag)`` under ``callers`` callers."""
    from jupyter_deploy import Model

    dep = client.deployment(deployment_id)
    model = Model(model_id=model_id, client=client)
    weights, pids = weights_and_pid(dep, model)
    crowd = Callers(model_id, callers, folder)
    first: list[float] = []
    ready: list[float] = []
    actions: list[str] = []
    try:
        time.sleep(1.0)  # the callers are going
        for r in range(repeats):
            tag = f"{name}{r}"
            t0 = time.monotonic()
            action = redeploy(tag)
            ready.append(time.monotonic() - t0)
            got = crowd.first(tag, t0)
            if got is None:
                raise SystemExit(f"{name}: no answer from the new code ({tag}) within 30 s")
            first.append(got)
            actions.append(action)
            now_weights, now_pids = weights_and_pid(dep, model)
            if action != "hot reload" or now_weights != weights or now_pids != pids:
                raise SystemExit(f"{name}: re-deploy {r} was {action!r}; weights {weights} -> {now_weights}, "
                                 f"pids {pids} -> {now_pids}")
            print(f"  {name} {r}: first answer from the new code {got:.3f} s, ready {ready[-1]:.3f} s", flush=True)
            time.sleep(0.5)
    finally:
        crowd.close()
    return {"first": first, "ready": ready, "calls": len(crowd.answers), "failures": crowd.failures,
            "actions": actions}


def _fmt(values: list[float], decimals: int = 3) -> str:
    if not values:
        return "-"
    return (f"{statistics.median(values):.{decimals}f} ({min(values):.{decimals}f}–"
            f"{max(values):.{decimals}f})")


def write_folder(root: Path, tag: str, load: float, model_id: str) -> Path:
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"model:\n  id: {model_id}\n")
    (root / "requirements.txt").write_text("")
    (root / "1" / "model.py").write_text(source(tag, load))
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 repeats, 2 s load (a smoke test, not for the record)")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    p.add_argument("--repeats", type=int, default=None, help="re-deploys of each kind (default 5)")
    p.add_argument("--load-seconds", type=float, default=None, help="load_model's sleep (default 10)")
    p.add_argument("--callers", type=int, default=8, help="concurrent callers (default 8)")
    args = p.parse_args(argv)
    repeats = max(1, args.repeats or (2 if args.quick else 5))
    load = args.load_seconds if args.load_seconds is not None else (2.0 if args.quick else 10.0)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    from notebook_bench import machine, teardown

    machine_info = machine()
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="jdhotbench-"))
    home = tmp / "jd-home"
    for key in ("JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT"):
        os.environ.pop(key, None)
    os.environ["JUPYTER_DEPLOY_HOME"] = str(home)
    env = dict(os.environ)
    results: dict[str, Any] = {}
    try:
        from jupyter_deploy import Client

        client = Client()
        folder = write_folder(tmp / "slow", "v", load, "slow")
        t0 = time.monotonic()
        client.deploy(folder, timeout=DEPLOY_TIMEOUT)
        results["first_deploy"] = time.monotonic() - t0
        print(f"first deploy (load_model {load:g} s): {results['first_deploy']:.2f} s", flush=True)
        def by_api(tag: str, hot: bool | None = None) -> str:
            write_folder(folder, tag, load, "slow")
            return client.deploy(folder, timeout=DEPLOY_TIMEOUT, hot=hot).rollout.action

        print(f"Client.deploy, {args.callers} callers", flush=True)
        results["api"] = measure("api", by_api, "slow", "slow", client, repeats, args.callers, tmp)

        # For reference: the same change rolled out the ordinary way (new replicas, load_model again).
        crowd = Callers("slow", args.callers, tmp)
        time.sleep(1.0)
        t0 = time.monotonic()
        action = by_api("ordinary", hot=False)
        results["ordinary_ready"] = time.monotonic() - t0
        results["ordinary_first"] = crowd.first("ordinary", t0)
        crowd.close()
        results["ordinary_failures"] = crowd.failures
        results["ordinary_calls"] = len(crowd.answers)
        print(f"ordinary rollout ({action}): first answer {results['ordinary_first']}, ready "
              f"{results['ordinary_ready']:.2f} s", flush=True)

        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryAccessor.enabled = False
        shell = InteractiveShell(config=config)
        shell.run_cell("%load_ext jupyter_deploy").raise_error()

        def by_magic(tag: str) -> str:
            with contextlib.redirect_stdout(io.StringIO()):
                shell.run_cell(f"%%deploy slow-cell -o _hot_dep\n{source(tag, load)}").raise_error()
            return shell.user_ns["_hot_dep"].rollout.action

        t0 = time.monotonic()
        by_magic("m")
        results["magic_first_deploy"] = time.monotonic() - t0
        print(f"%%deploy, {args.callers} callers", flush=True)
        results["magic"] = measure("magic", by_magic, "slow-cell", "slowcell",
                                   client, repeats, args.callers, tmp)
        magics = shell.magics_manager.registry.get("DeployMagics")
        if magics is not None:
            magics.close()
        client.close()
    finally:
        teardown(tmp, env)
    elapsed = time.perf_counter() - t_start
    text = report(results, repeats, load, args.callers, started, elapsed, machine_info,
                  "quick" if args.quick else "full")
    print()
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "hot_reload_latest.md").write_text(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} — hot reload (issue 17)\n\n{text}")
        print(f"appended to {RESULTS}")
    failed = len(results["api"]["failures"]) + len(results["magic"]["failures"]) + len(results["ordinary_failures"])
    return 1 if failed else 0


def report(r: dict[str, Any], repeats: int, load: float, callers: int, started: Any, elapsed: float,
           machine_info: str, mode: str) -> str:
    api, magic = r["api"], r["magic"]
    first_all = api["first"] + magic["first"]
    failures = api["failures"] + magic["failures"]
    met = "met" if first_all and max(first_all) < 1.0 else "MISSED"
    rows = [
        f"| hot reload, `load_model` sleeps {load:g} s, {callers} callers | median (min–max) | runs | target |",
        "| --- | --- | --- | --- |",
        f"| **`Client.deploy` → first answer from the new code**, s | {_fmt(api['first'])} | {repeats} | "
        f"< 1 s: {'met' if api['first'] and max(api['first']) < 1 else 'MISSED'} |",
        f"| … `Client.deploy` returns (ready), s | {_fmt(api['ready'])} | {repeats} |  |",
        f"| **`%%deploy` → first answer from the new code**, s | {_fmt(magic['first'])} | {repeats} | "
        f"< 1 s: {'met' if magic['first'] and max(magic['first']) < 1 else 'MISSED'} |",
        f"| … `%%deploy` cell returns (ready), s | {_fmt(magic['ready'])} | {repeats} |  |",
        f"| **failed calls** during the hot reloads (of calls made) | {len(failures)} of "
        f"{api['calls'] + magic['calls']:,} | {2 * repeats} | 0: {'met' if not failures else 'MISSED'} |",
        f"| reference: ordinary rollout of the same change (`hot=False`) → first answer from the new code, s | "
        f"{r['ordinary_first']:.3f} | 1 |  |" if r["ordinary_first"] is not None else
        "| reference: ordinary rollout → first answer from the new code | none within 30 s | 1 |  |",
        f"| … its failed calls (of calls made) | {len(r['ordinary_failures'])} of {r['ordinary_calls']:,} | 1 |  |",
        f"| reference: first deploy (`Client.deploy`, a new deployment), s | {r['first_deploy']:.2f} | 1 |  |",
        f"| reference: first `%%deploy` of the cell (new deployment), s | {r['magic_first_deploy']:.2f} | 1 |  |",
    ]
    header = (f"Run {started:%Y-%m-%d %H:%M %Z} (hot reload bench, {mode}, {repeats} re-deploys of each kind, "
              f"{elapsed:.0f} s). Machine: {machine_info}. Target (first answer < 1 s) {met}.")
    notes = ("A model whose `load_model` sleeps, then sets `self.weights`; `predict` returns a tag written in its "
             "body and the weights. Each re-deploy changes the tag (a new version: only `predict()`'s body "
             "differs), timed from the start of `Client.deploy(folder)` (upload included) or of the `%%deploy` "
             "cell (cell check and signature subprocess included) to the first answer any caller got from the "
             f"new code; every re-deploy checked to be a hot reload with the same weights and replica pid. "
             f"{callers} callers (threads of another process) call `predict` in a closed loop throughout.")
    failures_text = "".join(f"\n- {why}" for _, why in failures[:5])
    return f"{header}\n\n" + "\n".join(rows) + f"\n\n{notes}\n" + (
        f"\nFailures:{failures_text}\n" if failures else "")


if __name__ == "__main__":
    sys.exit(main())
