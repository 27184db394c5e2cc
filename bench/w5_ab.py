"""W5 (a 1 MB JPEG sent as bytes, decoded by the model) of two source trees against the floor, finely interleaved.

One child process per system keeps its server up (the peers' own adapters: ``grpc_floor`` with
the peers' grpc venv, ``jupyter_deploy`` with this Python and ``PYTHONPATH`` set to each tree)
and runs a batch of calls when asked; the parent asks each in turn, rotating the order every
round, so the load of a shared machine falls on every system alike (a whole ``run.py`` per
system, seconds apart, does not: its wall figures swing by 30 % here). It reports p50/p99
over all calls, the client's CPU per call, and the median over rounds of each batch's p50
over the floor's batch p50 of the same round.

Example (the tree before a change, unpacked from git, against the working tree)::

    mkdir -p /tmp/before && git archive main | tar -x -C /tmp/before
    python bench/w5_ab.py --old /tmp/before --new . --rounds 40 --batch 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("JUPYTER_DEPLOY_PEERS", ROOT.parent / "shared" / "peers"))
VENVS = Path(os.environ.get("PEERS_VENVS", "/tmp/peers-venvs"))


def child(adapter: str) -> None:
    """Serve batches: read a count on stdin, make that many W5 calls, print their ns and the CPU."""
    sys.path.insert(0, str(PEERS))
    import adapters
    from common import workloads as W

    ad = adapters.load(adapter)()
    ad.start()
    try:
        c, jpeg = ad.client(), W.make_image()
        for _ in range(W.W5_WARMUP):
            c.image(jpeg)
        print("ready", flush=True)
        for line in sys.stdin:
            took, cpu0 = [], time.process_time()
            for _ in range(int(line)):
                t = time.perf_counter_ns()
                r = c.image(jpeg)
                took.append(time.perf_counter_ns() - t)
                if (r["width"], r["height"]) != W.W5_SIZE:
                    raise AssertionError(f"bad image reply {r}")
            print(" ".join(map(str, took)), time.process_time() - cpu0, flush=True)
    finally:
        ad.stop()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, -int(-q * len(values)) - 1))]  # nearest rank


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="source tree before the change")
    p.add_argument("--new", default=str(ROOT), help="source tree after it (default: this one)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--batch", type=int, default=20, help="calls per system per round")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    me = str(Path(__file__).resolve())
    systems = {
        "floor": ([str(VENVS / "grpc" / "bin" / "python"), me, "--old", "-", "--child", "grpc_floor"], {}),
        "old": ([sys.executable, me, "--old", "-", "--child", "jupyter_deploy"],
                {"PYTHONPATH": str(Path(args.old).resolve())}),
        "new": ([sys.executable, me, "--old", "-", "--child", "jupyter_deploy"],
                {"PYTHONPATH": str(Path(args.new).resolve())}),
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, (argv, env) in systems.items():
            proc = procs[name] = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                  stderr=subprocess.DEVNULL, text=True, cwd=PEERS,
                                                  env={**os.environ, **env})
            if proc.stdout.readline().strip() != "ready":
                sys.exit(f"{name}: its server did not come up")
        took = {n: [] for n in procs}
        cpu = dict.fromkeys(procs, 0.0)
        batch_p50 = {n: [] for n in procs}
        names = list(procs)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                procs[name].stdin.write(f"{args.batch}\n")
                procs[name].stdin.flush()
                *calls, spent = procs[name].stdout.readline().split()
                ms = [int(x) / 1e6 for x in calls]
                took[name] += ms
                cpu[name] += float(spent)
                batch_p50[name].append(statistics.median(ms))
    finally:
        for proc in procs.values():
            if proc.stdin:
                proc.stdin.close()
        for proc in procs.values():
            proc.wait(60)
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(batch_p50[name], batch_p50["floor"]))
        print(f"{name:6s} p50 {_pct(took[name], .5):6.2f} ms  p99 {_pct(took[name], .99):6.2f} ms  "
              f"n={len(took[name])}  client CPU/call {cpu[name] / len(took[name]) * 1e6:5.0f} us  "
              f"p50/floor (median of rounds) {ratio:.3f}")


if __name__ == "__main__":
    main()
