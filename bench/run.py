"""Benchmarks W1 to W5 (shared/BENCHMARKS.md): jupyter_deploy beside its floor.

    python bench/run.py [--quick] [--record] [--repeats N] [--only w3|http]

In one run it starts, on 127.0.0.1, the floor (``bench/floor.py``, a bare grpcio
server: bytes in, bytes out), a bare jupyter_deploy runner serving ``bench/models/bench``,
and a control plane daemon under a temporary ``JUPYTER_DEPLOY_HOME`` with the same
model uploaded and deployed (``bench/platform_bench.py``), and measures them from this
process (the client): "runner" through ``RunnerClient``, "platform" through the full
client (``Client().model("bench").echo(...)``, route resolved once and cached). W4
(cold start) is measured on the platform first: ``create_deployment`` to the first
successful call, with a fresh deployment id each time. It also measures, in this
process, the direct Python call of the model (the limit) and the same call through
``load_local`` (the codec with no network), which helps tell the codec's cost from
gRPC's. Every measurement is repeated (the order of floor, runner and platform flips
every repeat), the table shows the median across repeats with the spread (min-max),
and runner/floor and platform/floor are medians of the per-repeat ratios.

W3 (dynamic batching) runs two more runners serving ``bench/models/batch``, one with
``--inference-batcher`` (max batch 32, max wait 5 ms) and one without, under 64 client
threads, and sets them beside the floor's W1b of the same repeat. ``--only w3`` runs
just the floor's W1b and W3 (no daemon).

``--only http`` runs W1, W2 and W5 through the daemon's HTTP gateway (``bench/gateway_bench.py``:
REST JSON, SSE, base64 and multipart images, OIP v2 REST) beside the gRPC client and the floor.

``--only peers`` runs issue 18's table (``bench/peers.py``): the shared peers' driver on the
floor, jupyter_deploy (same-host and over gRPC) and, where their venvs exist, BentoML and
Ray Serve, in one run with the load average.

``--only ray`` measures the Ray backend beside the local one: a one-node Ray cluster
started on loopback (``tests/ray_helpers.py``), the bench model deployed on a Ray
nodepool and on ``local/local`` of the same daemon, W1a, W1b and W2 of both through
the full client beside the floor, and W4 (``create_deployment`` to the first call) on Ray.

The table is printed, written to ``bench/out/latest.md`` (``latest_http.md``,
``latest_ray.md``), and with ``--record`` appended to ``bench/RESULTS.md`` with the date
and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import io
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MODEL_DIR = BENCH / "models" / "bench"
W3_MODEL_DIR = BENCH / "models" / "batch"
W3_BATCHER = '{"enabled": true, "max_batch_size": 32, "max_latency_ms": 5}'
OUT_DIR = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"

PAYLOAD = "x" * 100            # W1: a 100-byte string
N_CHUNKS = 1000                # W2: chunks per request
CALL_TIMEOUT = 10.0            # seconds, every unary call
STREAM_TIMEOUT = 30.0          # seconds, every streaming call
IMAGE_TIMEOUT = 30.0           # seconds, every W5 call
START_TIMEOUT = 120.0          # seconds for a server to say it serves
PHASE_CAP = 120.0              # seconds any single count-bounded loop may run
LOAD_CAP_PER_THREAD = 5_000_000  # requests a W1b thread may send at most

TARGETS_W1 = 1.3    # W1 p50: runner within 1.3x of the floor
TARGET_W2 = 20_000  # W2: runner at least 20,000 chunks/s
TARGET_W5 = 1.1     # W5 p50: runner within 1.1x of the floor
TARGET_W4 = 2.0     # W4: platform cold start under 2 s
TARGET_W3_SPEEDUP = 3.0   # W3: batching on at least 3x the requests/s of batching off
TARGET_W3_FLOOR = 0.7     # W3: batching on at least 70% of the floor's W1b requests/s
TARGET_W3_P99_MS = 50.0   # W3: batching on, p99 under 50 ms
TARGET_RAY_W1 = 1.15      # Ray: W1a p50 and W1b within 1.15x of a local replica
TARGET_RAY_W4 = 3.0       # Ray: create -> first call under 3 s


@dataclass
class Settings:
    repeats: int
    w1a_warm: int
    w1a_calls: int
    w1b_clients: int
    w1b_warm_s: float
    w1b_window_s: float
    w2_requests: int
    w5_warm: int
    w5_calls: int
    w4_runs: int
    w3_clients: int = 64


FULL = Settings(repeats=3, w1a_warm=200, w1a_calls=2000, w1b_clients=16, w1b_warm_s=2.0,
                w1b_window_s=10.0, w2_requests=5, w5_warm=10, w5_calls=200, w4_runs=3)
QUICK = Settings(repeats=2, w1a_warm=50, w1a_calls=300, w1b_clients=16, w1b_warm_s=0.5,
                 w1b_window_s=2.0, w2_requests=5, w5_warm=3, w5_calls=30, w4_runs=3)


# ---------------------------------------------------------------- server processes

class ServerProcess:
    """A server in its own process; its output is drained into ``lines``."""

    def __init__(self, name: str, argv: list[str]):
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, cwd=BENCH.parent)
        threading.Thread(target=self._drain, daemon=True, name=f"{name}-output").start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and seen == len(self.lines):
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n" + "\n".join(self.lines))
                if left <= 0:
                    raise TimeoutError(f"{self.name} did not print /{pattern}/ in {timeout:g} s:\n"
                                       + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_floor(servers: list[ServerProcess]) -> str:
    """Start the floor; it is added to ``servers`` at once, so a caller's finally can stop it."""
    srv = ServerProcess("floor", [sys.executable, str(BENCH / "floor.py"), "--address", "127.0.0.1:0"])
    servers.append(srv)
    return srv.wait_for(r"floor: listening on (\S+)", START_TIMEOUT).group(1)


def start_runner(servers: list[ServerProcess], model_dir: Path = MODEL_DIR, *args: str,
                 name: str = "runner") -> str:
    """Start a runner serving ``model_dir`` (the bench model); added to ``servers`` at once."""
    srv = ServerProcess(name, [sys.executable, "-m", "jupyter_deploy.runner", "--model-path",
                               str(model_dir), "--address", "127.0.0.1:0", *args])
    servers.append(srv)
    m = srv.wait_for(r"jupyter_deploy runner: listening on (\S+)", START_TIMEOUT)
    srv.wait_for(r"jupyter_deploy runner: serving", START_TIMEOUT)
    return m.group(1)


def bare_runner_start(servers: list[ServerProcess]) -> float:
    """W4 reference: seconds from launching a bare runner process to its "serving" line."""
    t0 = time.perf_counter()
    address = start_runner(servers)
    took = time.perf_counter() - t0
    srv = servers.pop()
    srv.stop()
    assert address
    return took


# ---------------------------------------------------------------- targets (what a workload calls)

class Target:
    """echo(str) -> str, chunks(n) -> iterator of 4-byte str, image_size(bytes) -> (w, h)."""

    name = ""

    def echo(self, text: str) -> str: raise NotImplementedError
    def chunks(self, n: int) -> Iterator[Any]: raise NotImplementedError
    def image_size(self, data: bytes) -> tuple[int, int]: raise NotImplementedError
    def close(self) -> None: pass


class FloorTarget(Target):
    name = "floor"

    def __init__(self, address: str):
        import grpc

        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
        grpc.channel_ready_future(self._channel).result(timeout=START_TIMEOUT)
        self._echo = self._channel.unary_unary("/bench.Floor/Echo")
        self._chunks = self._channel.unary_stream("/bench.Floor/Chunks")
        self._image = self._channel.unary_unary("/bench.Floor/ImageSize")

    def echo(self, text: str) -> str:
        return self._echo(text.encode(), timeout=CALL_TIMEOUT).decode()

    def chunks(self, n: int) -> Iterator[bytes]:
        return self._chunks(str(n).encode(), timeout=STREAM_TIMEOUT)

    def image_size(self, data: bytes) -> tuple[int, int]:
        w, h = self._image(data, timeout=IMAGE_TIMEOUT).split(b",")
        return int(w), int(h)

    def close(self) -> None:
        self._channel.close()


class RunnerTarget(Target):
    name = "runner"

    def __init__(self, address: str):
        from jupyter_deploy import RunnerClient

        self._client = RunnerClient(address, timeout=CALL_TIMEOUT, connect_timeout=START_TIMEOUT)
        self._client.wait_ready(START_TIMEOUT)
        self._echo = self._client.echo
        # The W3 model has echo only.
        self._chunks = getattr(self._client, "chunks", None)
        self._image = getattr(self._client, "image_size", None)

    def echo(self, text: str) -> str:
        return self._echo(text)

    def chunks(self, n: int) -> Iterator[str]:
        return self._chunks(n)

    def image_size(self, data: bytes) -> tuple[int, int]:
        out = self._image(data)
        return out["width"], out["height"]

    def close(self) -> None:
        self._client.close()


class DirectTarget(Target):
    """The limit: the model's own methods, called in this process."""

    name = "direct"

    def __init__(self, instance: Any):
        self._m = instance

    def echo(self, text: str) -> str:
        return self._m.echo(text)

    def chunks(self, n: int) -> Iterator[str]:
        return self._m.chunks(n)

    def image_size(self, data: bytes) -> tuple[int, int]:
        out = self._m.image_size(data)
        return out["width"], out["height"]


class LocalTarget(DirectTarget):
    """``load_local``: the runner's codec and ModelHost in this process, no gRPC."""

    name = "local"


# ---------------------------------------------------------------- workloads

def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def w1a(t: Target, s: Settings) -> dict[str, float]:
    """One client: warm-up, then timed unary echo calls; p50/p99 in µs."""
    deadline = time.monotonic() + PHASE_CAP
    for _ in range(s.w1a_warm):
        assert t.echo(PAYLOAD) == PAYLOAD
        if time.monotonic() > deadline:
            break
    lat: list[float] = []
    clock = time.perf_counter_ns
    echo = t.echo
    for _ in range(s.w1a_calls):
        t0 = clock()
        out = echo(PAYLOAD)
        lat.append((clock() - t0) / 1000)
        if len(out) != 100 or time.monotonic() > deadline:
            break
    lat.sort()
    return {"W1a p50 µs": _percentile(lat, 50), "W1a p99 µs": _percentile(lat, 99)}


def load(make: Callable[[], Target], n: int, s: Settings, what: str) -> tuple[float, list[float]]:
    """N threads, each with its own client, calling echo back to back (W1b, W3).

    Returns requests/s in the timed window (requests started in it and completed)
    and those requests' latencies in ms, sorted.
    """
    targets = [make() for _ in range(n)]
    counts = [0] * n
    errors = [0] * n
    latencies: list[list[float]] = [[] for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    box: dict[str, float] = {}

    def work(i: int) -> None:
        t = targets[i]
        lat = latencies[i]
        barrier.wait()
        start, end = box["start"], box["end"]
        clock = time.perf_counter
        done = 0
        for _ in range(LOAD_CAP_PER_THREAD):
            t0 = clock()
            if t0 >= end:
                break
            try:
                t.echo(PAYLOAD)
            except Exception:  # noqa: BLE001 (a failed call is counted, not fatal)
                errors[i] += 1
                continue
            if t0 >= start:
                done += 1
                lat.append((clock() - t0) * 1000)
        counts[i] = done

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    now = time.perf_counter()
    box["start"] = now + s.w1b_warm_s
    box["end"] = box["start"] + s.w1b_window_s
    barrier.wait(timeout=60)
    for th in threads:
        th.join(s.w1b_warm_s + s.w1b_window_s + CALL_TIMEOUT + 30)
    for t in targets:
        t.close()
    if sum(errors):
        print(f"  {what} {make.__name__}: {sum(errors)} failed calls", file=sys.stderr)
    return sum(counts) / s.w1b_window_s, sorted(x for lat in latencies for x in lat)


def w1b(make: Callable[[], Target], s: Settings) -> dict[str, float]:
    """16 threads, each with its own client, back to back; requests/s in the timed window."""
    rate, _ = load(make, s.w1b_clients, s, "W1b")
    return {"W1b req/s": rate}


def w3(make: Callable[[], Target], s: Settings, stats: Callable[[], dict]) -> dict[str, float]:
    """64 threads calling the lock-bound batchable echo; requests/s, p50/p99 (ms), mean batch size."""
    before = stats()
    rate, lat = load(make, s.w3_clients, s, "W3")
    after = stats()
    batches = after["batches"] - before["batches"]
    return {"W3 req/s": rate, "W3 p50 ms": _percentile(lat, 50) if lat else math.nan,
            "W3 p99 ms": _percentile(lat, 99) if lat else math.nan,
            "W3 mean batch": (after["items"] - before["items"]) / batches if batches else math.nan}


def w2(t: Target, s: Settings) -> dict[str, float]:
    """One request for 1000 chunks; time to first chunk (µs) and chunks/s, median of N requests."""
    def one() -> tuple[float, float]:
        clock = time.perf_counter
        t0 = clock()
        it = t.chunks(N_CHUNKS)
        first = None
        count = 0
        for _ in it:
            if first is None:
                first = clock()
            count += 1
            if count > N_CHUNKS:
                break
        t1 = clock()
        assert count == N_CHUNKS, f"{t.name}: {count} chunks"
        return (first - t0) * 1e6, count / (t1 - t0)

    one()  # warm-up
    runs = [one() for _ in range(s.w2_requests)]
    return {"W2 first chunk µs": statistics.median(r[0] for r in runs),
            "W2 chunks/s": statistics.median(r[1] for r in runs)}


def w5(t: Target, s: Settings, jpeg: bytes) -> dict[str, float]:
    """Decode a 1024x1024 JPEG sent as bytes; p50/p99 in ms."""
    deadline = time.monotonic() + PHASE_CAP
    for _ in range(s.w5_warm):
        assert t.image_size(jpeg) == (1024, 1024)
    lat: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(s.w5_calls):
        t0 = clock()
        size = t.image_size(jpeg)
        lat.append((clock() - t0) / 1e6)
        if size != (1024, 1024) or time.monotonic() > deadline:
            break
    lat.sort()
    return {"W5 p50 ms": _percentile(lat, 50), "W5 p99 ms": _percentile(lat, 99)}


def make_jpeg() -> bytes:
    """1024x1024 RGB: seeded noise plus a gradient, JPEG quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1234)
    noise = rng.integers(0, 256, size=(1024, 1024, 3), dtype=np.uint16)
    ramp = np.linspace(0, 255, 1024, dtype=np.float32)
    grad = np.stack([ramp[None, :].repeat(1024, 0), ramp[:, None].repeat(1024, 1),
                     (255 - ramp)[None, :].repeat(1024, 0)], axis=-1)
    arr = (noise * 0.5 + grad * 0.5).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- report

METRICS = [  # (metric, higher is better, decimals)
    ("W1a p50 µs", False, 0), ("W1a p99 µs", False, 0), ("W1b req/s", True, 0),
    ("W2 first chunk µs", False, 0), ("W2 chunks/s", True, 0),
    ("W5 p50 ms", False, 2), ("W5 p99 ms", False, 2),
]
COLUMNS = ["direct", "local", "floor", "runner", "platform"]
SERVED = ["floor", "runner", "platform"]  # measured from this process, in an order that flips


def _fmt(values: list[float], decimals: int) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if med < 10:
        decimals = max(decimals, 2)
    elif med < 100:
        decimals = max(decimals, 1)
    f = f"{{:,.{decimals}f}}"
    if len(values) == 1:
        return f.format(med)
    return f"{f.format(med)} ({f.format(min(values))}–{f.format(max(values))})"


def _target(metric: str, ratio: float | None, value: float | None) -> str:
    if metric == "W1a p50 µs" and ratio is not None:
        return f"≤ {TARGETS_W1}x: {'met' if ratio <= TARGETS_W1 else 'MISSED'}"
    if metric == "W2 chunks/s" and value is not None:
        return f"≥ {TARGET_W2:,}/s: {'met' if value >= TARGET_W2 else 'MISSED'}"
    if metric == "W5 p50 ms" and ratio is not None:
        return f"≤ {TARGET_W5}x: {'met' if ratio <= TARGET_W5 else 'MISSED'}"
    return ""


def _ratio(results: dict[str, dict[str, list[float]]], col: str, metric: str) -> tuple[str, float | None, str]:
    """``(cell, median ratio, target check)`` of ``col`` over the floor, per repeat."""
    fl = results.get("floor", {}).get(metric, [])
    vals = results.get(col, {}).get(metric, [])
    ratios = [r / f for r, f in zip(vals, fl) if f]
    if not ratios:
        return "-", None, ""
    ratio = statistics.median(ratios)
    cell = _fmt(ratios, 2).replace(" (", "x (") + ("x" if len(ratios) == 1 else "")
    return cell, ratio, _target(metric, ratio, statistics.median(vals))


def table(results: dict[str, dict[str, list[float]]]) -> str:
    head = ("| metric | direct call (limit) | load_local (codec, no gRPC) | floor (bare grpcio) "
            "| runner | platform (Client → Model) | runner/floor | platform/floor | target: runner; platform |")
    rows = [head, "| " + " | ".join(["---"] * 9) + " |"]
    for metric, _higher, dec in METRICS:
        cells = [_fmt(results.get(c, {}).get(metric, []), dec) for c in COLUMNS]
        r_cell, _, r_target = _ratio(results, "runner", metric)
        p_cell, _, p_target = _ratio(results, "platform", metric)
        target = f"{r_target}; {p_target.split(': ')[-1]}" if r_target and p_target else r_target or p_target
        rows.append(f"| {metric} | " + " | ".join(cells) + f" | {r_cell} | {p_cell} | {target} |")
    return "\n".join(rows)


W4_ROWS = [  # (key, label)
    ("W4 total s", "**W4 cold start**: `create_deployment` → first successful call"),
    ("W4 create call s", "… of which the `create_deployment` call"),
    ("W4 to RUNNING s", "… `create_deployment` → RUNNING seen by `wait_until_ready()` (polls every 0.1 s)"),
    ("W4 first call s", "… then `client.model()` + first call (ResolveRoute, new channel, call)"),
    ("W4 from IDLE s", "**W4 from IDLE**: a call to a deployment scaled to zero (`min_replicas: 0`) → its answer"),
    ("W4 from IDLE, wake → READY s", "… of which the daemon's wake → a READY replica (as the status and card show)"),
    ("bare runner start s", "reference: a bare `python -m jupyter_deploy.runner`, launch → \"serving\""),
    ("delete s", "deletion: `delete()` → gone from the listing (runner stopped)"),
    ("daemon start s", "daemon start (first `Client()`), once"),
    ("upload s", "`upload_model` of the bench model, once"),
]


def w4_table(w4: dict[str, list[float]]) -> str:
    rows = ["| W4 (seconds) | median (min–max) | runs | target |", "| --- | --- | --- | --- |"]
    for key, label in W4_ROWS:
        vals = w4.get(key, [])
        if not vals:
            continue
        target = ""
        if key in ("W4 total s", "W4 from IDLE s"):
            target = f"< {TARGET_W4:g} s: {'met' if statistics.median(vals) < TARGET_W4 else 'MISSED'}"
        rows.append(f"| {label} | {_fmt(vals, 3)} | {len(vals)} | {target} |")
    return "\n".join(rows)


def _times(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return _fmt(ratios, 2).replace(" (", "x (") + ("x" if len(ratios) == 1 else "")


W3_ROWS = [("W3 req/s", 0), ("W3 p50 ms", 1), ("W3 p99 ms", 1), ("W3 mean batch", 1)]


def w3_table(results: dict[str, dict[str, list[float]]]) -> str:
    """Batching on beside batching off and the floor's W1b of the same repeats."""
    on, off, bare = results.get("w3 on", {}), results.get("w3 off", {}), results.get("w3 floor", {})
    floor = results.get("floor", {}).get("W1b req/s", [])
    rows = ["| W3 (64 clients) | batching on | batching off | on/off | on / floor W1b | target "
            "| floor echo, 64 clients (transport alone) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, dec in W3_ROWS:
        a, b = on.get(key, []), off.get(key, [])
        ratio, vs_floor, target = "-", "-", ""
        if key == "W3 req/s" and a and b:
            ratios = [x / y for x, y in zip(a, b) if y]
            fl = [x / f for x, f in zip(a, floor) if f]
            ratio, vs_floor = _times(ratios), _times(fl)
            checks = []
            if ratios:
                checks.append(f"≥ {TARGET_W3_SPEEDUP:g}x off: "
                              f"{'met' if statistics.median(ratios) >= TARGET_W3_SPEEDUP else 'MISSED'}")
            if fl:
                checks.append(f"≥ {TARGET_W3_FLOOR:.0%} of floor: "
                              f"{'met' if statistics.median(fl) >= TARGET_W3_FLOOR else 'MISSED'}")
            target = "; ".join(checks)
        if key == "W3 p99 ms" and a:
            target = f"< {TARGET_W3_P99_MS:g} ms: {'met' if statistics.median(a) < TARGET_W3_P99_MS else 'MISSED'}"
        rows.append(f"| {key[3:]} | {_fmt(a, dec)} | {_fmt(b, dec)} | {ratio} | {vs_floor} | {target} "
                    f"| {_fmt(bare.get(key, []), dec)} |")
    rows.append(f"| floor W1b req/s (16 clients, same repeats) | {_fmt(floor, 0)} | | | | | |")
    return "\n".join(rows)


def machine() -> str:
    import google.protobuf
    import grpc
    import PIL

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"nproc {os.cpu_count()}, {cpu or platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, grpcio {grpc.__version__}, "
            f"protobuf {google.protobuf.__version__}, Pillow {PIL.__version__}; load average at start {load}")


# ---------------------------------------------------------------- main

class _Done(Exception):
    """Ends the measuring early (``--only``); the servers are stopped by the finally."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, not for the record)")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    p.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (at least 2)")
    p.add_argument("--only", choices=["w3", "http", "ray", "peers"], default=None,
                   help="w3: only the floor's W1b and W3, batching on and off (no daemon); "
                        "http: W1, W2 and W5 through the HTTP gateway beside gRPC and the floor; "
                        "ray: the Ray backend beside the local one and the floor; "
                        "peers: issue 18's table beside the floor, BentoML and Ray Serve (bench/peers.py)")
    args = p.parse_args(argv)
    if args.only == "peers":
        if str(BENCH) not in sys.path:
            sys.path.insert(0, str(BENCH))
        import peers

        return peers.main([*(["--quick"] if args.quick else []), *(["--record"] if args.record else []),
                           *(["--repeats", str(args.repeats)] if args.repeats else [])])
    only_w3 = args.only == "w3"
    s = QUICK if args.quick else FULL
    if args.repeats is not None:
        s.repeats = max(2, args.repeats)
    if args.only == "http":
        return run_http(s, args)
    if args.only == "ray":
        return run_ray(s, args.record)

    from jupyter_deploy import RunnerClient, load_local
    from jupyter_deploy.folder import load_model_class

    machine_info = machine()
    started = datetime.datetime.now().astimezone()
    jpeg = make_jpeg()
    direct = DirectTarget(load_model_class(MODEL_DIR)())
    local = LocalTarget(load_local(MODEL_DIR))
    results: dict[str, dict[str, list[float]]] = {c: {} for c in [*COLUMNS, "w3 on", "w3 off", "w3 floor"]}

    def add(col: str, values: dict[str, float]) -> None:
        for k, v in values.items():
            results[col].setdefault(k, []).append(v)

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from platform_bench import PlatformSession

    w4: dict[str, list[float]] = {}
    servers: list[ServerProcess] = []
    plat: PlatformSession | None = None
    t_start = time.monotonic()
    try:
        floor_addr = start_floor(servers)
        w3_addr = {"w3 on": start_runner(servers, W3_MODEL_DIR, "--inference-batcher", W3_BATCHER,
                                         name="w3-on"),
                   "w3 off": start_runner(servers, W3_MODEL_DIR, name="w3-off")}
        w3_makers = {k: (lambda a=a: RunnerTarget(a)) for k, a in w3_addr.items()}
        w3_stats = {k: RunnerClient(a, timeout=CALL_TIMEOUT).stats for k, a in w3_addr.items()}
        for name, fn in w3_makers.items():
            fn.__name__ = name

        def floor64() -> dict[str, float]:
            # The transport alone under W3's 64 clients: what bounds W3's requests/s and p99.
            make = lambda: FloorTarget(floor_addr)  # noqa: E731
            make.__name__ = "floor"
            rate, lat = load(make, s.w3_clients, s, "W3 floor")
            return {"W3 req/s": rate, "W3 p50 ms": _percentile(lat, 50), "W3 p99 ms": _percentile(lat, 99)}

        def run_w3(rep: int) -> None:
            for mode in (["w3 on", "w3 off", "w3 floor"] if rep % 2 == 0 else ["w3 floor", "w3 off", "w3 on"]):
                add(mode, floor64() if mode == "w3 floor" else w3(w3_makers[mode], s, w3_stats[mode]))

        if only_w3:
            floor_make = lambda: FloorTarget(floor_addr)  # noqa: E731
            floor_make.__name__ = "floor"
            for rep in range(s.repeats):
                print(f"repeat {rep + 1}/{s.repeats}: floor W1b, W3 on and off", file=sys.stderr, flush=True)
                if rep % 2 == 0:
                    add("floor", w1b(floor_make, s))
                run_w3(rep)
                if rep % 2 == 1:
                    add("floor", w1b(floor_make, s))
            raise _Done
        runner_addr = start_runner(servers)

        # W4 first, while no other platform runner runs; then the deployment the
        # steady-state workloads call (one deployment per model per nodepool).
        print("platform: daemon, upload, W4 cold starts", file=sys.stderr, flush=True)
        plat = PlatformSession(MODEL_DIR, call_timeout=STREAM_TIMEOUT, ready_timeout=START_TIMEOUT)
        for k, v in plat.timings.items():
            w4.setdefault(k, []).append(v)
        for i in range(1, s.w4_runs + 1):
            for k, v in plat.cold_start(f"bench{i}", PAYLOAD).items():
                w4.setdefault(k, []).append(v)
            w4.setdefault("delete s", []).append(plat.delete(f"bench{i}"))
            w4.setdefault("bare runner start s", []).append(bare_runner_start(servers))
        print("platform: W4 from IDLE (scale to zero, then a call)", file=sys.stderr, flush=True)
        for k, v in plat.cold_starts_from_idle("benchidle", PAYLOAD, s.w4_runs).items():
            w4.setdefault(k, []).extend(v)
        plat.deploy("bench")

        remote = {"floor": FloorTarget(floor_addr), "runner": RunnerTarget(runner_addr),
                  "platform": plat.target()}
        targets: dict[str, Target] = {**remote, "direct": direct, "local": local}
        session = plat
        makers = {"floor": lambda: FloorTarget(floor_addr), "runner": lambda: RunnerTarget(runner_addr),
                  "platform": lambda: session.target(), "direct": lambda: direct, "local": lambda: local}
        for name, fn in makers.items():
            fn.__name__ = name

        for rep in range(s.repeats):
            order = list(SERVED) if rep % 2 == 0 else list(reversed(SERVED))
            order += ["direct", "local"]  # the in-process limits, after the servers
            print(f"repeat {rep + 1}/{s.repeats} ({' then '.join(order)})", file=sys.stderr, flush=True)
            for col in order:
                add(col, w1a(targets[col], s))
            for col in order:
                add(col, w1b(makers[col], s))
            for col in order:
                add(col, w2(targets[col], s))
            for col in order:
                add(col, w5(targets[col], s, jpeg))
            run_w3(rep)
        for t in remote.values():
            t.close()
    except _Done:
        pass
    finally:
        if plat is not None:
            plat.close()
        for srv in servers:
            srv.stop()

    elapsed = time.monotonic() - t_start
    mode = ("quick" if args.quick else "full") + (", W3 only" if only_w3 else "")
    w3_note = (f"W3: {s.w3_clients} client threads calling the `batch=True` echo of bench/models/batch "
               f"(cost `sleep(0.002 + 0.0001 * batch)` under a process-wide lock), {s.w1b_warm_s:g} s "
               f"warm-up, {s.w1b_window_s:g} s window; batching on: `--inference-batcher {W3_BATCHER}`; "
               f"latencies of the requests started in the window; mean batch from the model's own counters "
               f"(warm-up included).")
    if only_w3:
        text = "\n".join([f"Run {started:%Y-%m-%d %H:%M %Z} ({mode}, {s.repeats} repeats, {elapsed:.0f} s). "
                          f"Machine: {machine_info}.", "", w3_table(results), "", w3_note])
        print(text)
        OUT_DIR.mkdir(exist_ok=True)
        (OUT_DIR / "latest_w3.md").write_text(text + "\n")
        if args.record:
            with RESULTS.open("a") as f:
                f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} (W3)\n\n{text}\n")
        return 0
    text = "\n".join([
        f"Run {started:%Y-%m-%d %H:%M %Z} ({mode}, {s.repeats} repeats, {elapsed:.0f} s). Machine: {machine_info}.",
        "",
        table(results),
        "",
        w4_table(w4),
        "",
        w3_table(results),
        "",
        (f"Each cell: median across repeats (min–max). runner/floor, platform/floor: medians of the "
         f"per-repeat ratios. platform: `Client().model(\"bench\")` calls through the control plane "
         f"(route cached), one Client per W1b thread. W4: {s.w4_runs} cold starts, a fresh deployment "
         f"id each (deleted in between), the model already uploaded. "
        f"W1a: {s.w1a_warm} warm-up + {s.w1a_calls} calls of a 100-byte string; "
        f"W1b: {s.w1b_clients} client threads, {s.w1b_warm_s:g} s warm-up, {s.w1b_window_s:g} s window; "
        f"W2: {N_CHUNKS} chunks of 4 bytes, median of {s.w2_requests} requests; "
        f"W5: 1024x1024 JPEG ({len(jpeg):,} bytes), {s.w5_warm} warm-up + {s.w5_calls} calls."),
        "",
        w3_note,
    ])
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "latest.md").write_text(text + "\n")
    if args.record:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by `python bench/run.py --record`; "
                               "see bench/README.md for how to read them.\n")
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z}\n\n{text}\n")
    return 0


# ---------------------------------------------------------------- HTTP gateway (W1h, W2h, W5h)

HTTP_COLUMNS = ["floor", "platform", "rest", "oip", "rest-multipart"]
TARGET_HTTP_W1A = 2.0     # REST W1a p50 within 2x of the floor
TARGET_HTTP_W1B = 0.6     # REST W1b at least 0.6x of the floor's requests/s
TARGET_HTTP_W2 = 50_000   # SSE W2 at least 50,000 chunks/s


def _http_target(metric: str, ratios: list[float], values: list[float]) -> str:
    if not ratios and not values:
        return ""
    if metric == "W1a p50 µs":
        r = statistics.median(ratios)
        return f"≤ {TARGET_HTTP_W1A}x: {'met' if r <= TARGET_HTTP_W1A else 'MISSED'}"
    if metric == "W1b req/s":
        r = statistics.median(ratios)
        return f"≥ {TARGET_HTTP_W1B}x: {'met' if r >= TARGET_HTTP_W1B else 'MISSED'}"
    if metric == "W2 chunks/s":
        v = statistics.median(values)
        return f"≥ {TARGET_HTTP_W2:,}/s: {'met' if v >= TARGET_HTTP_W2 else 'MISSED'}"
    return ""


def http_table(results: dict[str, dict[str, list[float]]]) -> str:
    head = ("| metric | floor (bare grpcio) | platform, gRPC (Client → Model) | REST (JSON; W2 SSE; W5 base64) "
            "| OIP v2 REST | REST multipart | REST/floor | OIP/floor | platform/floor | target (REST) |")
    rows = [head, "| " + " | ".join(["---"] * 10) + " |"]
    for metric, _higher, dec in METRICS:
        cells = [_fmt(results.get(c, {}).get(metric, []), dec) for c in HTTP_COLUMNS]
        if all(c == "-" for c in cells[2:]):
            continue
        fl = results["floor"].get(metric, [])
        ratio_cells = []
        rest_ratios: list[float] = []
        for col in ("rest", "oip", "platform"):
            vals = results[col].get(metric, [])
            ratios = [v / f for v, f in zip(vals, fl) if f]
            if col == "rest":
                rest_ratios = ratios
            ratio_cells.append(_times(ratios))
        target = _http_target(metric, rest_ratios, results["rest"].get(metric, []))
        if metric.startswith("W5") and results["rest-multipart"].get(metric):
            mp = [v / f for v, f in zip(results["rest-multipart"][metric], fl) if f]
            target = f"multipart/floor {_times(mp)}"
        rows.append(f"| {metric} | " + " | ".join(cells) + " | " + " | ".join(ratio_cells) + f" | {target} |")
    return "\n".join(rows)


def run_http(s: Settings, args: argparse.Namespace) -> int:
    """The HTTP gateway's W1, W2 and W5 beside the gRPC client and the floor, in one run."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from gateway_bench import HttpTarget, MultipartTarget, OipTarget
    from platform_bench import PlatformSession

    machine_info = machine()
    started = datetime.datetime.now().astimezone()
    jpeg = make_jpeg()
    results: dict[str, dict[str, list[float]]] = {c: {} for c in HTTP_COLUMNS}

    def add(col: str, values: dict[str, float]) -> None:
        for k, v in values.items():
            results[col].setdefault(k, []).append(v)

    servers: list[ServerProcess] = []
    plat = None
    t_start = time.monotonic()
    try:
        floor_addr = start_floor(servers)
        print("platform: daemon, upload, deploy; the gateway", file=sys.stderr, flush=True)
        plat = PlatformSession(MODEL_DIR, call_timeout=STREAM_TIMEOUT, ready_timeout=START_TIMEOUT)
        plat.deploy("bench")
        url = plat.client.gateway_url
        token = (plat.home / "local.token").read_text().strip()
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # the gateway starts beside the daemon: wait until it answers a call
            try:
                assert HttpTarget(url, token).echo(PAYLOAD) == PAYLOAD
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        session = plat
        makers: dict[str, Callable[[], Any]] = {
            "floor": lambda: FloorTarget(floor_addr), "platform": lambda: session.target(),
            "rest": lambda: HttpTarget(url, token), "oip": lambda: OipTarget(url, token),
            "rest-multipart": lambda: MultipartTarget(url, token)}
        for name, fn in makers.items():
            fn.__name__ = name
        targets = {name: fn() for name, fn in makers.items()}
        for rep in range(s.repeats):
            order = ["floor", "platform", "rest", "oip"]
            if rep % 2:
                order.reverse()
            print(f"repeat {rep + 1}/{s.repeats} ({' then '.join(order)})", file=sys.stderr, flush=True)
            for col in order:
                add(col, w1a(targets[col], s))
            for col in order:
                add(col, w1b(makers[col], s))
            for col in [c for c in order if c != "oip"]:
                add(col, w2(targets[col], s))
            for col in [c if c != "oip" else "rest-multipart" for c in order]:
                add(col, w5(targets[col], s, jpeg))
        for t in targets.values():
            t.close()
    finally:
        if plat is not None:
            plat.close()
        for srv in servers:
            srv.stop()
    elapsed = time.monotonic() - t_start
    mode = "quick" if args.quick else "full"
    text = "\n".join([
        f"Run {started:%Y-%m-%d %H:%M %Z} ({mode}, HTTP gateway, {s.repeats} repeats, {elapsed:.0f} s). "
        f"Machine: {machine_info}; at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"(the ratios move with it: the REST path crosses three processes, the floor two).", "",
        http_table(results), "",
        (f"Each cell: median across repeats (min–max); ratios are medians of the per-repeat ratios. "
         f"HTTP targets hold one keep-alive http.client connection each (one per W1b thread) to the "
         f"gateway the daemon started (uvicorn's server with the gateway's own httptools protocol, uvloop), "
         f"which calls the runner over grpc.aio. "
         f"W1a: {s.w1a_warm} warm-up + {s.w1a_calls} calls of a 100-byte string; W1b: {s.w1b_clients} "
         f"client threads, {s.w1b_warm_s:g} s warm-up, {s.w1b_window_s:g} s window; W2: {N_CHUNKS} chunks "
         f"of 4 bytes as Server-Sent Events, counted as parsed, median of {s.w2_requests} requests; W5: "
         f"1024x1024 JPEG ({len(jpeg):,} bytes) as base64 JSON (REST) or a multipart file, {s.w5_warm} "
         f"warm-up + {s.w5_calls} calls; OIP: W1 as a BYTES tensor in JSON.")])
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "latest_http.md").write_text(text + "\n")
    if args.record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} (HTTP gateway)\n\n{text}\n")
    return 0


RAY_METRICS = [("W1a p50 µs", False, 0), ("W1a p99 µs", False, 0), ("W1b req/s", True, 0),
               ("W2 first chunk µs", False, 0), ("W2 chunks/s", True, 0)]
RAY_COLUMNS = ["floor", "platform", "ray"]


def ray_table(results: dict[str, dict[str, list[float]]]) -> str:
    rows = ["| metric | floor (bare grpcio) | local replica (Client → Model) | Ray replica (Client → Model) "
            "| ray/local | ray/floor | local/floor | target: ray vs local |", "| " + " | ".join(["---"] * 8) + " |"]
    for metric, higher, dec in RAY_METRICS:
        cells = [_fmt(results[c].get(metric, []), dec) for c in RAY_COLUMNS]
        ray, local, floor = (results[c].get(metric, []) for c in ("ray", "platform", "floor"))
        vs_local = [r / x for r, x in zip(ray, local) if x]
        target = ""
        if vs_local and metric in ("W1a p50 µs", "W1b req/s"):
            med = statistics.median(vs_local)
            ok = med >= 1 / TARGET_RAY_W1 if higher else med <= TARGET_RAY_W1
            target = f"within {TARGET_RAY_W1}x: {'met' if ok else 'MISSED'}"
        rows.append(f"| {metric} | " + " | ".join(cells) + f" | {_times(vs_local)} "
                    f"| {_times([r / f for r, f in zip(ray, floor) if f])} "
                    f"| {_times([x / f for x, f in zip(local, floor) if f])} | {target} |")
    return "\n".join(rows)


def run_ray(s: Settings, record: bool) -> int:
    """``--only ray``: the Ray backend beside the local one and the floor, in one run (see the docstring)."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    sys.path.insert(0, str(BENCH))
    from platform_bench import PlatformSession
    from ray_helpers import RAY_ENV, RayCluster

    machine_info = machine()
    started = datetime.datetime.now().astimezone()
    results: dict[str, dict[str, list[float]]] = {c: {} for c in RAY_COLUMNS}
    w4: dict[str, list[float]] = {}
    servers: list[ServerProcess] = []
    plat: PlatformSession | None = None
    t_start = time.monotonic()
    os.environ.update(RAY_ENV)
    # The Ray workers import jupyter_deploy as this process does (a checkout's, when run from one).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH.parent), os.environ.get("PYTHONPATH")]))
    cluster = RayCluster()
    try:
        print("ray: starting a one-node cluster", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        address = cluster.start_head(num_cpus=4)
        w4["ray start --head s"] = [time.perf_counter() - t0]
        floor_addr = start_floor(servers)
        plat = PlatformSession(MODEL_DIR, call_timeout=STREAM_TIMEOUT, ready_timeout=START_TIMEOUT)
        t0 = time.perf_counter()
        ray = plat.client.create_compute_cluster("ray", cloud_provider="ray", ray_address=address)
        w4["create the ray compute cluster s"] = [time.perf_counter() - t0]
        pool = ray.create_nodepool("ray")
        print("ray: W4 cold starts", file=sys.stderr, flush=True)
        for i in range(1, s.w4_runs + 1):
            for k, v in plat.cold_start(f"benchray{i}", PAYLOAD, nodepool=pool).items():
                w4.setdefault(k, []).append(v)
            w4.setdefault("delete s", []).append(plat.delete(f"benchray{i}"))
        plat.deploy("bench")
        plat.deploy("benchray", nodepool=pool)
        makers = {"floor": lambda: FloorTarget(floor_addr), "platform": lambda: plat.target("bench"),
                  "ray": lambda: plat.target("benchray")}
        for name, fn in makers.items():
            fn.__name__ = name
        targets = {name: make() for name, make in makers.items()}
        for rep in range(s.repeats):
            order = list(RAY_COLUMNS) if rep % 2 == 0 else list(reversed(RAY_COLUMNS))
            print(f"repeat {rep + 1}/{s.repeats} ({' then '.join(order)})", file=sys.stderr, flush=True)
            for col in order:
                for k, v in w1a(targets[col], s).items():
                    results[col].setdefault(k, []).append(v)
            for col in order:
                for k, v in w1b(makers[col], s).items():
                    results[col].setdefault(k, []).append(v)
            for col in order:
                for k, v in w2(targets[col], s).items():
                    results[col].setdefault(k, []).append(v)
        for t in targets.values():
            t.close()
    finally:
        if plat is not None:
            plat.close()
        for srv in servers:
            srv.stop()
        cluster.stop()
    elapsed = time.monotonic() - t_start
    rows = ["| Ray (seconds) | median (min–max) | runs | target |", "| --- | --- | --- | --- |"]
    for key in ("W4 total s", "W4 create call s", "W4 to RUNNING s", "W4 first call s", "delete s",
                "create the ray compute cluster s", "ray start --head s"):
        vals = w4.get(key, [])
        if vals:
            target = (f"< {TARGET_RAY_W4:g} s: {'met' if statistics.median(vals) < TARGET_RAY_W4 else 'MISSED'}"
                      if key == "W4 total s" else "")
            rows.append(f"| {key} | {_fmt(vals, 3)} | {len(vals)} | {target} |")
    text = "\n".join([
        f"Run {started:%Y-%m-%d %H:%M %Z} ({'quick' if s is QUICK else 'full'}, Ray backend, {s.repeats} "
        f"repeats, {elapsed:.0f} s). Machine: {machine_info}.", "", ray_table(results), "", "\n".join(rows), "",
        "The same daemon serves the bench model on local/local and on a Ray nodepool (one head node on "
        "loopback, started by the bench); both columns call through `Client().model(\"bench\")` with the "
        "route cached, so the call goes straight to the replica's gRPC server (a Ray actor's runner on the "
        "Ray node). W4 on Ray: create_deployment to the first successful call, a fresh deployment id each."])
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "latest_ray.md").write_text(text + "\n")
    if record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} (Ray backend)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
