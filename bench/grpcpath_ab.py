"""Interleaved A/B of the runner's gRPC data path: two code trees, one floor, one moment.

    python bench/grpcpath_ab.py --base /tmp/grpcpath-base [--rounds 5]

``--base`` is a copy of an older tree (``git archive <rev> | tar -x -C DIR``); the new one is
this checkout. Each tree serves ``bench/models/bench`` from a runner of its own, set up as the
control plane starts one (route tokens checked, the call recorder on). Every round runs the
floor (``bench/floor.py``), runner A and runner B in a rotating order, each measured by a fresh
client process importing that tree's client (``RunnerClient`` with a route token): W1a
(sequential echo p50), W1b (16 threads, own channel each), W2 (time to first chunk of each
request, chunks/s), and CPU microseconds per W1a call in the client and the server
(``/proc/<pid>/stat``). Ratios are per round (against the floor of that round), then medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
NEW = BENCH.parent
MODEL_DIR = BENCH / "models" / "bench"
PAYLOAD = "x" * 100
DEPLOYMENT = "abdep"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---------------------------------------------------------------- the client process

def child(args: argparse.Namespace) -> None:
    token = os.environ.get("AB_TOKEN", "")
    if args.kind == "floor":
        import grpc  # (only here: the client package sets grpc up before it loads)

        def make():
            ch = grpc.insecure_channel(args.address)
            echo, chunks = ch.unary_unary("/bench.Floor/Echo"), ch.unary_stream("/bench.Floor/Chunks")
            return (lambda: echo(PAYLOAD.encode(), timeout=30).decode()), (lambda n: chunks(str(n).encode(),
                                                                                            timeout=30)), ch
    else:
        from jupyter_deploy import RunnerClient

        def make():
            c = RunnerClient(args.address, timeout=30)
            from jupyter_deploy import _wire
            c._transport.metadata = ((_wire.ROUTE_TOKEN_KEY, token),) if token else None
            return (lambda: c.echo(PAYLOAD)), c.chunks, c
    echo, chunks, _ = make()
    for _ in range(200):
        assert len(echo()) == 100
    lat = []
    clock = time.perf_counter_ns
    c0, s0 = time.process_time(), cpu_s(args.server_pid)
    for _ in range(args.calls):
        t0 = clock()
        echo()
        lat.append((clock() - t0) / 1000)
    c1, s1 = time.process_time(), cpu_s(args.server_pid)
    lat.sort()
    out = {"w1a_p50": lat[len(lat) // 2], "w1a_p99": lat[int(len(lat) * 0.99)],
           "client_cpu_us": (c1 - c0) / args.calls * 1e6, "server_cpu_us": (s1 - s0) / args.calls * 1e6}
    # W2: one warm-up, then 5 requests of 1000 chunks.
    ttfc, rates = [], []
    for i in range(6):
        t0 = time.perf_counter()
        first, n = None, 0
        for _ in chunks(1000):
            if first is None:
                first = time.perf_counter()
            n += 1
        t1 = time.perf_counter()
        assert n == 1000, n
        if i:
            ttfc.append((first - t0) * 1e6)
            rates.append(n / (t1 - t0))
    out["w2_ttfc"] = ttfc
    out["w2_rate"] = statistics.median(rates)
    # W1b: 16 threads, each its own client, 1 s warm-up then a 3 s window.
    clients = [make()[0] for _ in range(16)]
    counts = [0] * 16
    every = [0] * 16
    start = time.perf_counter() + 1.0
    end = start + args.window
    def work(i: int) -> None:
        e = clients[i]
        for _ in range(1_000_000):
            t0 = time.perf_counter()
            if t0 >= end:
                break
            e()
            every[i] += 1
            if t0 >= start:
                counts[i] += 1
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(16)]
    c0, s0 = time.process_time(), cpu_s(args.server_pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    c1, s1 = time.process_time(), cpu_s(args.server_pid)
    out["w1b"] = sum(counts) / args.window
    out["w1b_client_cpu_us"] = (c1 - c0) / sum(every) * 1e6
    out["w1b_server_cpu_us"] = (s1 - s0) / sum(every) * 1e6
    print("AB " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- the driver

class Server:
    def __init__(self, argv: list[str], env: dict, pattern: str):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=NEW)
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        self.address = ""
        for line in self.proc.stdout:
            self.lines.append(line)
            if pattern in line and not self.address:
                self.address = line.split(pattern, 1)[1].split()[0]
                if "runner" not in pattern:
                    break
            if "serving" in line and self.address:
                break
            if time.monotonic() > deadline:
                break
        if not self.address:
            raise RuntimeError("".join(self.lines))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", help="the old tree (A)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--runner-env-a", action="append", default=[], metavar="KEY=VALUE",
                   help="set in runner A's environment (to A/B a switch on one tree: --base .)")
    p.add_argument("--client-env-a", action="append", default=[], metavar="KEY=VALUE",
                   help="set in the environment of A's client processes")
    p.add_argument("--child", action="store_true")
    p.add_argument("--kind")
    p.add_argument("--address")
    p.add_argument("--server-pid", type=int)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    sys.path.insert(0, str(NEW))
    from jupyter_deploy import _tokens

    key = _tokens.derive_key(b"ab-secret", b"ab-salt")
    trees = {"A": Path(args.base).resolve(), "B": NEW}
    work = Path(tempfile.mkdtemp(prefix="grpcpath-ab-"))
    servers: dict[str, Server] = {}
    try:
        env = dict(os.environ, PYTHONPATH=str(NEW))
        servers["floor"] = Server([sys.executable, str(BENCH / "floor.py")], env, "floor: listening on ")
        for name, tree in trees.items():
            tel = work / name / "telemetry" / "r1"
            tel.mkdir(parents=True)
            env = dict(os.environ, PYTHONPATH=str(tree), JUPYTER_DEPLOY_TELEMETRY=str(tel),
                       JUPYTER_DEPLOY_VERIFY_KEY=_tokens.public_bytes(key).hex(), DEPLOYMENT_ID=DEPLOYMENT)
            if name == "A":
                env.update(kv.split("=", 1) for kv in args.runner_env_a)
            servers[name] = Server([sys.executable, "-m", "jupyter_deploy.runner", "--model-path", str(MODEL_DIR),
                                    "--no-env"], env, "jupyter_deploy runner: listening on ")
        results: dict[str, list[dict]] = {k: [] for k in servers}
        order = list(servers)
        for r in range(args.rounds):
            token = _tokens.sign(key, deployment_id=DEPLOYMENT, caller="ab", ttl=50)
            for name in order[r % 3:] + order[:r % 3]:
                tree = trees.get(name, NEW)
                env = dict(os.environ, PYTHONPATH=str(tree), AB_TOKEN=token)
                if name == "A":
                    env.update(kv.split("=", 1) for kv in args.client_env_a)
                out = subprocess.run([sys.executable, str(NEW / "bench" / "grpcpath_ab.py"), "--child",
                                      "--kind", "floor" if name == "floor" else "runner",
                                      "--address", servers[name].address, "--server-pid",
                                      str(servers[name].proc.pid), "--calls", str(args.calls),
                                      "--window", str(args.window)],
                                     env=env, capture_output=True, text=True, timeout=300, cwd=str(tree))
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("AB ")]
                if not line:
                    raise RuntimeError(f"{name}: {out.stdout}\n{out.stderr}")
                res = json.loads(line[0][3:])
                results[name].append(res)
                print(f"round {r} {name:5s} p50 {res['w1a_p50']:7.1f} us  w1b {res['w1b']:7.0f}/s  "
                      f"ttfc {' '.join(f'{x:.0f}' for x in res['w2_ttfc'])} us  {res['w2_rate']:7.0f} ch/s  "
                      f"cpu client {res['client_cpu_us']:.0f} server {res['server_cpu_us']:.0f} us/call, "
                      f"under W1b {res['w1b_client_cpu_us']:.0f} / {res['w1b_server_cpu_us']:.0f}",
                      flush=True)
        print(f"\nload average at the end: {os.getloadavg()}")
        for name in ("A", "B"):
            p50 = statistics.median(results[name][i]["w1a_p50"] / results["floor"][i]["w1a_p50"]
                                    for i in range(args.rounds))
            w1b = statistics.median(results[name][i]["w1b"] / results["floor"][i]["w1b"] for i in range(args.rounds))
            ttfc = [results[name][i]["w2_ttfc"][j] / statistics.median(results["floor"][i]["w2_ttfc"])
                    for i in range(args.rounds) for j in range(5)]
            print(f"{name}: W1a p50 {p50:.2f}x floor, W1b {w1b:.2f}x floor, W2 TTFC per request / floor median: "
                  f"max {max(ttfc):.2f}x median {statistics.median(ttfc):.2f}x, "
                  f"chunks/s {statistics.median(x['w2_rate'] for x in results[name]):.0f}, "
                  f"cpu/call client {statistics.median(x['client_cpu_us'] for x in results[name]):.0f} us "
                  f"server {statistics.median(x['server_cpu_us'] for x in results[name]):.0f} us")
        f = results["floor"]
        print(f"floor: p50 {statistics.median(x['w1a_p50'] for x in f):.0f} us, "
              f"cpu/call client {statistics.median(x['client_cpu_us'] for x in f):.0f} us "
              f"server {statistics.median(x['server_cpu_us'] for x in f):.0f} us, "
              f"W2 TTFC median {statistics.median(t for x in f for t in x['w2_ttfc']):.0f} us")
        b = [statistics.median(results['B'][i]['w1a_p50'] / results['A'][i]['w1a_p50'] for i in range(args.rounds))]
        print(f"B/A W1a p50 (median of per-round ratios): {b[0]:.3f}")
    finally:
        for s in servers.values():
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
