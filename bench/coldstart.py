"""W4 cold start, measured the peers' way, with a timeline of where the time goes.

W4 = ``nodepool.create_deployment(...)`` -> the first successful ``Model(...).unary(...)``
answer, with the daemon up and the model uploaded (untimed), the client polling ``unary``
every 5 ms as ``../shared/peers/adapters/jupyter_deploy.py`` ``cold_start()`` does.

Beside the total, a sampler thread (1 ms) notes when the replica's port file appears
(the runner bound its port: interpreter start + imports done) and when its health turns
SERVING (the model loaded); the runner's process start time comes from ``/proc``
(10 ms resolution; spawned runners only: a forked one has the template's command line),
and its CPU time (user + system, 10 ms resolution) once it answered. Also the peers' way:
daemon launch -> first answer.

Interleaved A/B of two checkouts (old code vs new code, one daemon each, alternating)::

    python bench/coldstart.py --runs 7 --tree A=/work/main --tree B=/work/wt/coldstart

Each tree's daemon runs with ``PYTHONPATH=<tree>``; the runner inherits it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MODEL = '''
from jupyter_deploy import ModelClass


class Bench(ModelClass):
    @ModelClass.method
    def unary(self, data: bytes) -> bytes:
        return data

    @ModelClass.method(batch=True)
    def batch(self, data: list[bytes]) -> list[bytes]:
        return data
'''

CHILD = r'''
import json, os, sys, time, threading, glob
t_launch = time.perf_counter()
from jupyter_deploy import Client, Model
home, port, model_dir, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def first_answer(m, dep, t0):
    while True:
        try:
            assert m.unary(data=b"x", deployment_id=dep) == b"x"
            return time.perf_counter() - t0
        except Exception:
            if time.perf_counter() - t0 > 120:
                raise
            time.sleep(0.005)

deadline = time.time() + 60
while True:
    try:
        c = Client(autostart=False)
        c.list_compute_clusters()
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.01)
t_daemon = time.perf_counter() - t_launch
c.upload_model(model_dir)
pool = c.compute_cluster("local").nodepool("local")
m = Model(model_id="bench", user_id="local", app_id="default", client=c)

def deploy(dep):
    return pool.create_deployment(dep, worker={"model": {"id": "bench"}},
        autoscale_config={"min_replicas": 1, "max_replicas": 1},
        inference_batcher={"enabled": True, "max_batch_size": 32, "max_latency_ms": 5})

def sample(marks, t0, stop):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    port_file, stub = None, None
    while not stop.is_set():
        if port_file is None:
            found = glob.glob(os.path.join(home, "run", "*.port")) + glob.glob(os.path.join(home, "sandboxes/*/run/*.port"))
            if found:
                port_file = found[0]
                marks["port file"] = time.perf_counter() - t0
                rid = os.path.basename(port_file)[:-5]
                for pid in os.listdir("/proc"):
                    if pid.isdigit():
                        try:
                            if rid in open(f"/proc/{pid}/cmdline").read():
                                ticks = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
                                up = float(open("/proc/uptime").read().split()[0])
                                marks["process start"] = (time.perf_counter() - t0) - (up - ticks / os.sysconf("SC_CLK_TCK"))
                                break
                        except OSError:
                            pass
        elif stub is None:
            try:
                p = int(open(port_file).read())
                stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{p}"))
            except (OSError, ValueError):
                pass
        else:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == 1:
                    marks["health SERVING"] = time.perf_counter() - t0
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.001)

out = {"daemon up s": t_daemon}
m0 = Model(model_id="bench", user_id="local", app_id="default", client=c)
t0 = time.perf_counter(); deploy("launch"); out["peers' way s"] = t_daemon + first_answer(m0, "launch", t0)
pool.delete_deployments(["launch"])
while any(d.id == "launch" for d in pool.list_deployments()) or glob.glob(os.path.join(home, "run", "*.port")):
    time.sleep(0.05)
for i in range(runs):
    marks, stop = {}, threading.Event()
    m = Model(model_id="bench", user_id="local", app_id="default", client=c)
    t0 = time.perf_counter()
    th = threading.Thread(target=sample, args=(marks, t0, stop), daemon=True)
    th.start()
    dep = deploy(f"cold{i}")
    marks["create returned"] = time.perf_counter() - t0
    marks["W4 s"] = first_answer(m, f"cold{i}", t0)
    try:  # the runner's CPU time so far (user + system): what its start cost, whatever the load
        [pid] = [r["pid"] for r in dep.status["replicas"] if r["state"] == "READY"]
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        marks["runner CPU s"] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    stop.set(); th.join()
    print(json.dumps(marks), flush=True)
    pool.delete_deployments([f"cold{i}"])
    while any(d.id == f"cold{i}" for d in pool.list_deployments()) or glob.glob(os.path.join(home, "run", "*.port")):
        time.sleep(0.05)
print(json.dumps(out), flush=True)
'''


def model_folder(root: Path) -> Path:
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "1" / "model.py").write_text(MODEL)
    (root / "config.yaml").write_text(textwrap.dedent("""\
        model:
          id: "bench"
          user_id: "local"
          app_id: "default"
          model_type_id: "text-to-text"
        inference_compute_info:
          cpu_limit: "2"
          cpu_memory: "2Gi"
          num_accelerators: 0
        """))
    (root / "requirements.txt").write_text("")
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session(tree: str, runs: int, extra_env: dict[str, str]) -> list[dict]:
    """One daemon of ``tree``: the peers' way once, then ``runs`` cold starts; a dict per line."""
    import json

    home = Path(tempfile.mkdtemp(prefix="jd-cold-"))
    model = model_folder(Path(tempfile.mkdtemp(prefix="jd-cold-model-")))
    port = free_port()
    env = {**os.environ, **extra_env, "PYTHONPATH": tree, "JUPYTER_DEPLOY_HOME": str(home),
           "JUPYTER_DEPLOY_ADDRESS": f"127.0.0.1:{port}"}
    env.pop("JUPYTER_DEPLOY_PAT", None)
    daemon = subprocess.Popen([sys.executable, "-m", "jupyter_deploy", "serve", "--address", f"127.0.0.1:{port}"],
                              env=env, stdout=open(home / "daemon.out", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=tree)  # cwd: `-m` puts it first on sys.path
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(home), str(port), str(model), str(runs)],
                             env=env, capture_output=True, text=True, timeout=600, cwd=tree)
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"{tree}: the bench client failed")
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5, help="cold starts per daemon")
    p.add_argument("--rounds", type=int, default=1, help="daemons per tree, interleaved")
    p.add_argument("--tree", action="append", default=[], help="NAME=PATH of a checkout (repeatable)")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemons (repeatable)")
    args = p.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"here": str(Path(__file__).resolve().parents[1])}
    extra = dict(e.split("=", 1) for e in args.env)
    results: dict[str, list[dict]] = {name: [] for name in trees}
    per_round: dict[str, list[float]] = {name: [] for name in trees}  # median W4 of each round
    for rnd in range(args.rounds):
        for name, tree in trees.items():
            lines = session(tree, args.runs, extra)
            results[name].extend(lines)
            per_round[name].append(statistics.median(line["W4 s"] for line in lines if "W4 s" in line))
            for line in lines:
                print(f"round {rnd} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in line.items()), flush=True)
    for name, lines in results.items():
        keys = dict.fromkeys(k for line in lines for k in line)
        print(f"== {name} (medians, s)")
        for k in keys:
            vals = [line[k] for line in lines if k in line]
            print(f"  {k:16s} {statistics.median(vals):.3f}  ({min(vals):.3f}-{max(vals):.3f}, n={len(vals)})")
    first, *others = trees
    for name in others:  # interleaved rounds: the ratio within each round moves less than either
        ratios = [b / a for a, b in zip(per_round[first], per_round[name])]
        print(f"== W4 {name} / {first}: median of per-round ratios {statistics.median(ratios):.3f} "
              f"({', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
