"""Issue 18's table: jupyter_deploy beside the bare grpcio floor and the peers, in one run.

The workloads and their timing are the peers' own (``../shared/peers``, its README): this
script runs its ``run.py`` once per system, each with the Python that has that system's
dependencies, and puts every figure in one table with its ratio to the floor measured in
the same run. It runs one repeat of every system per round, flipping their order every round,
so that a machine whose speed drifts during the run (a shared one does) weighs on all alike. jupyter_deploy is measured twice: as a caller on the replica's host gets it
(the default, the same-host data plane) and as a remote caller gets it (gRPC, with
``JUPYTER_DEPLOY_DATA_PLANE=grpc``). Peers run where their venvs exist
(``bash ../shared/peers/setup_venvs.sh`` makes them under /tmp/peers-venvs).

Beside the peers' rows it measures what they do not: W4 the peers' way (daemon launch ->
first answer, a deployment already in the home), and ``import jupyter_deploy`` /
``%load_ext jupyter_deploy`` (median over fresh interpreters, net of a bare one).

Examples::

    python bench/peers.py                    # every system found, 2 repeats (20-30 minutes)
    python bench/peers.py --quick            # smoke test: 1 s loads, 1 repeat (about 5 minutes)
    python bench/peers.py --systems grpc_floor,jupyter_deploy --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "peers"
VENVS = Path(os.environ.get("PEERS_VENVS", "/tmp/peers-venvs"))
MODEL_DIR = ROOT / "bench" / "models" / "bench"


def peers_dir() -> Path:
    found = Path(os.environ.get("JUPYTER_DEPLOY_PEERS", ROOT.parent / "shared" / "peers"))
    if not (found / "run.py").exists():
        sys.exit(f"no peers benchmark at {found}: set JUPYTER_DEPLOY_PEERS to the folder holding "
                 f"shared/peers/run.py")
    return found


def systems(wanted: list[str] | None) -> list[tuple[str, str, str, dict]]:
    """(label, adapter, python, extra environment) of every system to run, in run order."""
    def venv(name: str) -> str | None:
        python = VENVS / name / "bin" / "python"
        return str(python) if python.exists() else None

    found = [
        # The floor from the peers' pinned venv when there is one, else from ours (grpcio is a dependency).
        ("grpc_floor", "grpc_floor", venv("grpc") or sys.executable, {}),
        ("jupyter_deploy", "jupyter_deploy", sys.executable, {}),
        ("jupyter_deploy[grpc]", "jupyter_deploy", sys.executable, {"JUPYTER_DEPLOY_DATA_PLANE": "grpc"}),
        ("bentoml_http", "bentoml_http", venv("bento"), {"BENTOML_DO_NOT_TRACK": "True"}),
        ("ray_handle", "ray_handle", venv("ray"), {"RAY_USAGE_STATS_ENABLED": "0"}),
    ]
    picked = [s for s in found if s[2] and (wanted is None or s[0] in wanted)]
    if wanted:
        missing = set(wanted) - {s[0] for s in picked}
        if missing:
            sys.exit(f"cannot run {', '.join(sorted(missing))}: no such system or no venv under {VENVS} "
                     f"(make them with bash ../shared/peers/setup_venvs.sh)")
    return picked


def run_peers(peers: Path, out: Path, picked: list, repeats: int, quick: bool) -> dict:
    """Run the peers' driver for every system, one repeat at a time: round after round, the
    systems in turn, the order flipped every round (a machine that slows down or speeds up over
    the run then weighs on every system alike, not on whichever ran first). Returns the merged
    results (label -> system result, the rounds' runs in order)."""
    merged: dict = {"meta": {}, "systems": {}}
    for round_ in range(repeats):
        for label, adapter, python, extra in (picked if round_ % 2 == 0 else picked[::-1]):
            part = out / f"{label}.{round_ + 1}.json"
            args = ["--system", adapter, "--repeats", "1", "--out", str(part)]
            argv = [python, "-c", _QUICK, *args] if quick else [python, "run.py", *args]
            load_before = os.getloadavg()[0]
            print(f"== {label} ({python}), round {round_ + 1} of {repeats}", flush=True)
            started = time.monotonic()
            done = subprocess.run(argv, cwd=peers, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **extra},
                                  timeout=1800)
            if done.returncode != 0 or not part.exists():
                print(f"!! {label}: run.py exited {done.returncode}", flush=True)
                continue
            data = json.loads(part.read_text())
            result = next(iter(data["systems"].values()))
            loads = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            wall = round(time.monotonic() - started, 1)
            merged["meta"] = data.get("meta", {})
            kept = merged["systems"].get(label)
            if kept is None:
                result.update(system=label, load_before_after=loads, bench_wall_s=wall)
                merged["systems"][label] = result
                continue
            for workload, runs in result.get("runs", {}).items():
                kept.setdefault("runs", {}).setdefault(workload, []).extend(runs)
            kept.setdefault("failures", {}).update(result.get("failures", {}))
            kept["load_before_after"] += loads
            kept["bench_wall_s"] = round(kept["bench_wall_s"] + wall, 1)
    return merged


# run.py's own --quick saves nothing: this sets its short loads and keeps the results file.
_QUICK = ("import sys, runpy; sys.argv = ['run.py'] + sys.argv[1:]; sys.path.insert(0, '.'); "
          "from common import workloads as W; W.W1_SECONDS = W.W3_SECONDS = 1.0; "
          "W.LOAD_WARMUP_S = 0.5; W.W4_LAUNCHES = 1; runpy.run_path('run.py', run_name='__main__')")


# ------------------------------------------------------------------ what the peers do not measure

def import_times(rounds: int) -> dict[str, float]:
    """``import jupyter_deploy`` (net of a bare interpreter) and ``%load_ext jupyter_deploy`` (inside a
    shell that is up), median wall ms over fresh processes, by ``bench/import_bench.py``."""
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.json"
        subprocess.run([sys.executable, str(ROOT / "bench" / "import_bench.py"), "--rounds", str(rounds),
                        "--json", str(samples)], check=True, stdout=subprocess.DEVNULL)
        data = json.loads(samples.read_text())
    bare, imported, load_ext = data["bare"], data["import this"], data["load_ext this"]
    return {"import_ms": statistics.median(i["wall"] - b["wall"] for i, b in zip(imported, bare)) * 1000,
            "bare_python_ms": statistics.median(b["wall"] for b in bare) * 1000,
            "load_ext_ms": statistics.median(x["wall"] for x in load_ext) * 1000}


def daemon_launch_to_answer(launches: int) -> list[float]:
    """W4 the peers' way: seconds from launching ``jupyter-deploy serve`` on a home that holds a
    deployment (min 1 replica) to the first answer of a call into it."""
    home = tempfile.mkdtemp(prefix="jd-w4-")
    cli = str(Path(sys.executable).with_name("jupyter-deploy"))
    times = []
    for i in range(launches + 1):  # the first launch creates the deployment and is not counted
        address = f"127.0.0.1:{_free_port()}"
        env = {**os.environ, "JUPYTER_DEPLOY_HOME": home, "JUPYTER_DEPLOY_ADDRESS": address}
        t0 = time.perf_counter()
        daemon = subprocess.Popen([cli, "serve", "--address", address], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            code = _first_answer_code(str(MODEL_DIR), create=i == 0)
            subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
            if i:
                times.append(time.perf_counter() - t0)
        finally:
            daemon.terminate()
            daemon.wait(30)
    return times


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_answer_code(model_dir: str, create: bool) -> str:
    setup = (f"c.upload_model({model_dir!r}); c.compute_cluster('local').nodepool('local')"
             f".create_deployment('w4', worker={{'model': {{'id': 'bench'}}}})\n") if create else ""
    return ("import time\nfrom jupyter_deploy import Client, Model\n"
            "deadline = time.time() + 120\n"
            "while True:\n"
            "    try:\n        c = Client(autostart=False); c.list_compute_clusters(); break\n"
            "    except Exception:\n"
            "        if time.time() > deadline: raise\n        time.sleep(0.005)\n"
            + setup +
            "m = Model(model_id='bench', client=c)\n"
            "while True:\n"
            "    try:\n        assert m.echo(text='x', deployment_id='w4') == 'x'; break\n"
            "    except Exception:\n"
            "        if time.time() > deadline: raise\n        time.sleep(0.005)\n")


# ------------------------------------------------------------------ the table

def _values(result: dict | None, key: str, field: str) -> list[float]:
    if not result:
        return []
    return [r[field] for r in result.get("runs", {}).get(key, []) if r.get(field) is not None]


def _cell(values: list[float], scale: float = 1.0) -> str:
    if not values:
        return "–"
    return " / ".join(f"{v * scale:,.0f}" if v * scale >= 100 else f"{v * scale:.2f}" for v in values)


ROWS = [  # (row, workload, field, scale, better, target as a ratio to the floor for the same-host caller)
    ("W1a p50 µs", "W1a", "p50_us", 1, "low", 0.5),
    ("W1a p99 µs", "W1a", "p99_us", 1, "low", None),
    ("W1b req/s (16 clients)", "W1b", "rps", 1, "high", 2.0),
    ("W2 time to first chunk µs", "W2", "ttfc_us", 1, "low", 1.1),
    ("W2 chunks/s", "W2", "chunks_per_s", 1, "high", None),
    ("W3 batch req/s (64 clients)", "W3", "rps", 1, "high", 2.0),
    ("W3 batch p99 ms", "W3", "p99_us", 1e-3, "low", 1.0),
    ("W3 off req/s", "W3off", "rps", 1, "high", None),
    ("W4 s (ours: create -> answer; peers: launch -> answer)", "W4", "median_s", 1, "low", None),
    ("W5 p50 ms", "W5", "p50_us", 1e-3, "low", 1.0),
    ("W5 p99 ms", "W5", "p99_us", 1e-3, "low", None),
]
REMOTE_TARGETS = {"W1a": 1.0, "W1b": 1.0}  # a remote caller (gRPC): issue 18's own bar


def _ratio(ours: list[float], floor: list[float]) -> float | None:
    if not ours or not floor or statistics.median(floor) == 0:
        return None
    return statistics.median(ours) / statistics.median(floor)


def _met(ratio: float | None, target: float | None, better: str) -> str:
    if ratio is None or target is None:
        return ""
    ok = ratio <= target if better == "low" else ratio >= target
    return f"{'met' if ok else 'not met'} ({'≤' if better == 'low' else '≥'} {target:g}x)"


def table(merged: dict, extra: dict) -> str:
    S = merged["systems"]
    floor = S.get("grpc_floor")
    names = [n for n in S if n != "grpc_floor"]
    head = ["row", "floor", *names, "same-host / floor", "target", "remote (gRPC) / floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, key, field, scale, better, target in ROWS:
        f = _values(floor, key, field)
        ours, remote = _values(S.get("jupyter_deploy"), key, field), _values(S.get("jupyter_deploy[grpc]"), key, field)
        r, rr = _ratio(ours, f), _ratio(remote, f)
        if key == "W2" and field == "ttfc_us" and f and ours:
            # "in every repeat": the worst repeat against the floor's median.
            r = max(ours) / statistics.median(f)
        remote_goal = REMOTE_TARGETS.get(key)
        cells = [row, _cell(f, scale), *(_cell(_values(S[n], key, field), scale) for n in names),
                 f"{r:.2f}x" if r is not None else "–", _met(r, target, better),
                 (f"{rr:.2f}x " + _met(rr, remote_goal, better)).strip() if rr is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    def extra_row(row: str, ours: str, target: str = "") -> None:
        cells = [row, _cell(_values(floor, "W4", "median_s")) if "launch" in row else "", ours]
        cells += [""] * (len(head) - len(cells) - 2) + [target, ""]
        lines.append("| " + " | ".join(cells) + " |")

    if "launch_s" in extra:
        extra_row("W4 s, daemon launch -> first answer (the peers' way)", _cell(extra["launch_s"]))
    if "import_ms" in extra:
        extra_row(f"`import jupyter_deploy` ms (net of a bare python, {extra['bare_python_ms']:.0f} ms)",
                  f"{extra['import_ms']:.0f}", f"{'met' if extra['import_ms'] <= 40 else 'not met'} (≤ 40)")
        extra_row("`%load_ext jupyter_deploy` ms", f"{extra['load_ext_ms']:.0f}",
                  f"{'met' if extra['load_ext_ms'] <= 20 else 'not met'} (≤ 20)")
    def rounds(pairs: list) -> str:
        return " / ".join(f"{a}→{b}" for a, b in zip(pairs[::2], pairs[1::2]))
    loads = ", ".join(f"{n} {rounds(S[n]['load_before_after'])}" for n in S)
    return "\n".join(lines) + f"\n\nLoad average (1 min) before→after each system, per round: {loads}.\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", help="comma-separated labels (default: every one whose venv exists): "
                                     "grpc_floor, jupyter_deploy, jupyter_deploy[grpc], bentoml_http, ray_handle")
    p.add_argument("--repeats", type=int, default=None, help="repeats of every workload (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="1 s loads, 1 repeat, fewer launches: a smoke test")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = p.parse_args(argv)
    peers = peers_dir()
    repeats = args.repeats or (1 if args.quick else 2)
    picked = systems(args.systems.split(",") if args.systems else None)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = OUT / stamp
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "calibrate.py"], cwd=peers, check=False)

    merged = run_peers(peers, out, picked, repeats, args.quick)
    extra: dict = {}
    if any(label == "jupyter_deploy" for label, *_ in picked):
        extra["launch_s"] = daemon_launch_to_answer(1 if args.quick else 3)
        extra.update(import_times(5 if args.quick else 20))
    (out / "results.json").write_text(json.dumps(merged, indent=1))
    (out / "extra.json").write_text(json.dumps(extra, indent=1))
    # The peers' own report of the merged run (its RESULTS.md lands beside results.json).
    subprocess.run([sys.executable, "report.py"], cwd=peers, env={**os.environ, "PEERS_OUT": str(out / "results.json")},
                   check=False, stdout=subprocess.DEVNULL)
    text = (f"## {dt.datetime.now():%Y-%m-%d %H:%M} — jupyter_deploy beside the floor and the peers "
            f"(bench/peers.py{' --quick' if args.quick else ''}, {repeats} repeat(s); cells: every repeat in order)\n\n"
            + table(merged, extra))
    (out / "table.md").write_text(text)
    print("\n" + text)
    print(f"results: {out}")
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
