"""W1 with the call log off and on: does recording every call move the platform's latency?

    python bench/logging_bench.py            # about 1 minute; table -> bench/out/logging_latest.md
    python bench/logging_bench.py --w1b      # also W1b (16 clients, 10 s each): about 3 more minutes
    python bench/logging_bench.py --quick    # short loops (a smoke test)
    python bench/logging_bench.py --record   # also append the table to bench/RESULTS.md

Three settings of the platform column of ``bench/run.py`` (``Client().model("bench").echo``):

- **off**: the daemon (and so its runners) started with ``JUPYTER_DEPLOY_CALL_LOG=off``:
  nothing is recorded, the baseline;
- **access**: the default, an access record for every call (``inference_logger`` mode none);
- **all**: ``inference_logger: {mode: all}``: inputs and outputs too.

Three daemons run at once, one per setting, each with the bench model deployed; rounds of one
block of W1a calls per setting follow each other, the order flipping every round, so that the
machine's drift hits all three alike. The table shows each setting's p50 and p99 over all its
calls, and the median over rounds of its block p50 over the "off" block p50 of the same round.
Target: "access" and "all" within 5% of "off". A missed target is reported, never an error.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from platform_bench import PlatformSession
from run import (
    FULL,
    MODEL_DIR,
    OUT_DIR,
    PAYLOAD,
    PHASE_CAP,
    QUICK,
    RESULTS,
    START_TIMEOUT,
    STREAM_TIMEOUT,
    _fmt,
    _percentile,
    machine,
    w1b,
)

SETTINGS = {  # name -> (daemon environment, deployment config)
    "off": ({"JUPYTER_DEPLOY_CALL_LOG": "off"}, {}),
    "access": ({}, {}),
    "all": ({}, {"inference_logger": {"mode": "all"}}),
}
#: Sessions start in this order (the one with extra environment last: os.environ is shared, and
#: a session's environment stays set until it closes, so a later session would inherit it).
START_ORDER = ["access", "all", "off"]
TARGET = 1.05  # W1a p50 with logging on at most 5% above off


class Setting:
    """One daemon with the bench model deployed under one setting, and a client of its own."""

    def __init__(self, name: str):
        from jupyter_deploy import Client

        env, config = SETTINGS[name]
        self.name = name
        self.session = PlatformSession(MODEL_DIR, call_timeout=STREAM_TIMEOUT, ready_timeout=START_TIMEOUT,
                                       env=env)
        self.session.deploy("bench", **config)
        self.pat = (self.session.home / "local.token").read_text().strip()
        self.address = self.session.client.address
        self.client = Client(pat=self.pat, address=self.address, autostart=False)
        self.echo = self.client.model("bench").echo

    def target(self):
        """A target with its own Client (for W1b threads)."""
        from jupyter_deploy import Client

        client = Client(pat=self.pat, address=self.address, autostart=False)

        class T:
            echo = staticmethod(client.model("bench").echo)
            close = staticmethod(client.close)
        return T()

    def records(self) -> int:
        return len(self.client.deployment("bench").access_logs(limit=10))

    def close(self) -> None:
        self.client.close()
        self.session.close()


def request_path_cost(n: int = 100_000) -> float:
    """µs per call that the recorder adds on the request path (``begin`` + ``end``), in this process.

    The same calls a runner's handler wrapper makes, with a real request and response, a
    recorder writing to a temporary folder (its background thread running as in a runner).
    """
    import tempfile

    from jupyter_deploy import _wire
    from jupyter_deploy.proto import runner_pb2 as pb
    from jupyter_deploy.runner._telemetry import CallRecorder

    request = pb.PredictRequest(method="echo", args=[pb.Entry(key="text", value=pb.Value(str=PAYLOAD))])
    response = pb.PredictResponse(output=pb.Value(str=PAYLOAD))
    metadata = ((_wire.ROUTE_TOKEN_KEY, "x.y"),)
    with tempfile.TemporaryDirectory() as tmp:
        rec = CallRecorder(Path(tmp) / "replica")
        begin, end = rec.begin, rec.end
        t0 = time.perf_counter()
        for _ in range(n):
            started, wall = begin()
            end(started, wall, "unary", request, response, "OK", None, metadata)
        cost = (time.perf_counter() - t0) / n * 1e6
        rec.close()
    return cost


def block(echo, calls: int) -> list[float]:
    """``calls`` timed echo calls (µs each), bounded by PHASE_CAP."""
    deadline = time.monotonic() + PHASE_CAP
    clock = time.perf_counter_ns
    out = []
    for _ in range(calls):
        t0 = clock()
        r = echo(PAYLOAD)
        out.append((clock() - t0) / 1000)
        if len(r) != len(PAYLOAD) or time.monotonic() > deadline:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--w1b", action="store_true", help="also W1b (16 client threads)")
    p.add_argument("--record", action="store_true")
    p.add_argument("--repeats", type=int, default=None, help="rounds of blocks (default 12; quick 3)")
    args = p.parse_args(argv)
    s = QUICK if args.quick else FULL
    rounds = max(2, args.repeats or (3 if args.quick else 12))
    per_block = 200 if args.quick else 500
    started = datetime.datetime.now().astimezone()
    info = machine()
    t0 = time.monotonic()
    settings: dict[str, Setting] = {}
    lat: dict[str, list[float]] = {n: [] for n in SETTINGS}
    p50s: dict[str, list[float]] = {n: [] for n in SETTINGS}
    w1b_rates: dict[str, list[float]] = {n: [] for n in SETTINGS}
    try:
        for name in START_ORDER:
            print(f"starting a daemon for '{name}'", file=sys.stderr, flush=True)
            settings[name] = Setting(name)
        for name in SETTINGS:  # warm-up
            block(settings[name].echo, s.w1a_warm)
        for rep in range(rounds):
            order = list(SETTINGS) if rep % 2 == 0 else list(reversed(SETTINGS))
            print(f"round {rep + 1}/{rounds} ({' then '.join(order)})", file=sys.stderr, flush=True)
            for name in order:
                values = sorted(block(settings[name].echo, per_block))
                lat[name] += values
                p50s[name].append(_percentile(values, 50))
            if args.w1b and rep < 2:
                for name in order:
                    w1b_rates[name].append(w1b(settings[name].target, s)["W1b req/s"])
        kept = {name: settings[name].records() for name in SETTINGS}
        costs = [request_path_cost() for _ in range(3)]
    finally:
        for name in reversed(START_ORDER):
            if name in settings:
                settings[name].close()

    head = ("| setting | W1a p50 µs (all calls) | W1a p99 µs | block p50 / off, per round | W1b req/s "
            "| records kept | target |")
    rows = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in SETTINGS:
        values = sorted(lat[name])
        ratios = [v / b for v, b in zip(p50s[name], p50s["off"])]
        ratio = statistics.median(ratios)
        target = "" if name == "off" else f"≤ {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}"
        rows.append(f"| {name} | {_percentile(values, 50):,.0f} | {_percentile(values, 99):,.0f} | "
                    f"{_fmt(ratios, 3).replace(' (', 'x (')} | {_fmt(w1b_rates[name], 0)} | "
                    f"{'yes' if kept[name] else 'none'} | {target} |")
    off_p50 = _percentile(sorted(lat["off"]), 50)
    cost = statistics.median(costs)
    rows.append(f"| the recorder alone: `begin` + `end` per call in one process, its background thread running "
                f"(so its JSON work counts too), median of 3 × "
                f"100,000) | {cost:.2f} µs per call | | {cost / off_p50:.2%} of off's p50 | | | |")
    title = (f"Call log overhead, run {started:%Y-%m-%d %H:%M %Z} ({'quick' if args.quick else 'full'}, "
             f"{rounds} rounds, {time.monotonic() - t0:.0f} s). Machine: {info}.")
    text = "\n".join([
        title, "", *rows, "",
        f"The platform column of bench/run.py (`Client().model(\"bench\").echo`, a 100-byte string), one daemon "
        f"per setting, all three running at once; {rounds} rounds of one block of {per_block} timed calls per "
        "setting, the order flipped every round (drift in the machine hits all three alike). off: "
        "`JUPYTER_DEPLOY_CALL_LOG=off` (nothing recorded); access: the default (an access record per call); all: "
        "`inference_logger: {mode: all}`. Ratio: the median over rounds of a block's p50 over the off block's "
        "p50 in the same round (min–max)." + (f" W1b: {s.w1b_clients} threads, {s.w1b_window_s:g} s window, "
                                              "2 rounds." if args.w1b else "")])
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "logging_latest.md").write_text(text + "\n")
    if args.record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z}: call log overhead (bench/logging_bench.py)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
