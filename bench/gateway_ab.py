"""A/B of gateway code: gateways of several revisions against one daemon and runner, interleaved.

    python bench/gateway_ab.py --rev old=main --rev new=WORKTREE [--rounds 8] [--w1b] [--w2]

Each ``--rev NAME=REV`` is a git revision whose ``jupyter_deploy`` is exported to a temporary
folder (``WORKTREE``: this checkout as it is) and started as its own gateway process (``python
-m jupyter_deploy.gateway --daemon ...``, with ``PYTHONPATH`` on that folder) beside the one the
daemon runs; all of them resolve routes through the same daemon and call the same runner of
the deployment ``bench``, so only the gateway's code differs. W1a (and W1b, W2) run for the
floor and each gateway in turn, the order flipping every round, so the machine's drift hits
them alike; reported are medians of the per-round ratios to the floor and to the first
revision, and each process's CPU time per request (from /proc: less noisy than latency on
a shared machine). The daemon's gateway stays on the worktree's code (the daemon imports
this checkout when run with its PYTHONPATH), the runner is this checkout's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
from gateway_bench import HttpTarget  # noqa: E402
from platform_bench import PlatformSession  # noqa: E402


def _cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _export(rev: str, into: Path) -> Path:
    if rev == "WORKTREE":
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "jupyter_deploy"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/gateway_ab.py")
    p.add_argument("--rev", action="append", required=True, metavar="NAME=REV",
                   help="a gateway to measure: a git revision, or WORKTREE (repeatable)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=400, help="W1a calls per round and target")
    p.add_argument("--w1b", action="store_true", help="also W1b (16 threads, 2 s a round and target)")
    p.add_argument("--w2", action="store_true", help="also W2 (SSE, 1000 chunks)")
    args = p.parse_args(argv)
    s = run.Settings(repeats=1, w1a_warm=100, w1a_calls=args.calls, w1b_clients=16, w1b_warm_s=0.5,
                     w1b_window_s=2.0, w2_requests=5, w5_warm=0, w5_calls=0, w4_runs=0)
    servers: list[run.ServerProcess] = []
    procs: dict[str, subprocess.Popen] = {}
    plat = None
    tmp = Path(tempfile.mkdtemp(prefix="jdbench-ab-"))
    try:
        floor = run.start_floor(servers)
        plat = PlatformSession(run.MODEL_DIR, call_timeout=run.STREAM_TIMEOUT, ready_timeout=run.START_TIMEOUT)
        plat.deploy("bench")
        token = (plat.home / "local.token").read_text().strip()
        urls = {}
        for spec in args.rev:
            name, _, rev = spec.partition("=")
            tree = _export(rev, tmp / name)
            proc = subprocess.Popen([sys.executable, "-m", "jupyter_deploy.gateway", "--daemon", plat.client.address,
                                     "--address", "127.0.0.1:0"], env={**os.environ, "PYTHONPATH": str(tree)},
                                    stdout=subprocess.PIPE, stderr=(tmp / f"{name}.log").open("w"), text=True,
                                    cwd=tmp)
            procs[name] = proc
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if "listening on " not in line:
                raise RuntimeError(f"gateway {name} did not start: {(tmp / f'{name}.log').read_text()[-2000:]}")
            urls[name] = line.split("listening on ")[1].split()[0]
        makers = {"floor": lambda: run.FloorTarget(floor)}
        for name, url in urls.items():
            makers[name] = lambda url=url: HttpTarget(url, token)
        for name, make in makers.items():
            make.__name__ = name
        deadline = time.monotonic() + run.START_TIMEOUT
        targets = {}
        for name, make in makers.items():
            while True:
                try:
                    targets[name] = make()
                    targets[name].echo(run.PAYLOAD)
                    break
                except (OSError, RuntimeError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        pids = {"floor server": servers[0].proc.pid, **{f"gateway {n}": pr.pid for n, pr in procs.items()}}
        runner = subprocess.run(["pgrep", "-f", "jupyter_deploy.runner.*" + str(plat.home)], capture_output=True,
                                text=True).stdout.split()
        pids.update({f"runner {pid}": int(pid) for pid in runner})
        results: dict[str, dict[str, list[float]]] = {n: {} for n in makers}
        cpu: dict[str, dict[str, list[float]]] = {}
        order = list(makers)

        def measure(name: str, workload: str, fn) -> None:
            before = {k: _cpu(pid) for k, pid in pids.items()}
            c0 = time.process_time()
            values = fn()
            for k, v in values.items():
                results[name].setdefault(k, []).append(v)
            n = (args.calls if workload == "W1a" else values.get("W1b req/s", 0) * (s.w1b_warm_s + s.w1b_window_s))
            if n:
                row = cpu.setdefault(f"{name} {workload}", {})
                for k, pid in pids.items():
                    row.setdefault(k, []).append((_cpu(pid) - before[k]) / n * 1e6)
                row.setdefault("bench client", []).append((time.process_time() - c0) / n * 1e6)

        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds} ({' then '.join(order)}; load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
            for name in order:
                measure(name, "W1a", lambda name=name: run.w1a(targets[name], s))
            if args.w1b:
                for name in order:
                    measure(name, "W1b", lambda name=name: run.w1b(makers[name], s))
            if args.w2:
                for name in order:
                    measure(name, "W2", lambda name=name: run.w2(targets[name], s))
            order.reverse()
        for t in targets.values():
            t.close()
        first = next(iter(urls))
        for name in makers:
            cells = []
            for metric, values in results[name].items():
                vs_floor = statistics.median(v / f for v, f in zip(values, results["floor"][metric]))
                cell = f"{metric} {statistics.median(values):,.0f} ({vs_floor:.2f}x floor"
                if name not in ("floor", first):
                    cell += f", {statistics.median(v / b for v, b in zip(values, results[first][metric])):.3f}x {first}"
                cells.append(cell + ")")
            print(f"{name}: " + "; ".join(cells))
        print("CPU µs per request (median over rounds):")
        for row_name, row in cpu.items():
            used = {k: statistics.median(v) for k, v in row.items() if max(v) > 5}
            print(f"  {row_name}: " + ", ".join(f"{k} {v:.0f}" for k, v in used.items()))
    finally:
        for proc in procs.values():
            proc.terminate()
        if plat is not None:
            plat.close()
        for srv in servers:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
