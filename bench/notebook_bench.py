"""W6 (notebook rendering) and the ``%%deploy`` cell time, measured in a real kernel.

    python bench/notebook_bench.py [--quick] [--record] [--repeats N] [--tokens N]

Starts an IPython kernel (jupyter_client ``KernelManager``, kernel ``python3``) whose
``JUPYTER_DEPLOY_HOME`` is a temporary folder (``JUPYTER_DEPLOY_ADDRESS`` and
``JUPYTER_DEPLOY_PAT`` unset), so the first ``%%deploy`` starts a daemon of its own.
Every cell is sent with ``execute_interactive(output_hook=...)``: a cell's time runs
from the execute request to the kernel's ``idle`` status (plus the reply), and the hook
counts the display messages the cell sent on iopub (``display_data``,
``update_display_data``, ``stream``), which a saved notebook would collapse.

In the kernel: ``%load_ext jupyter_deploy``, then ``%%deploy tokens`` a model whose
``generate(n)`` yields ``"tok1 "``, ``"tok2 "``, ... as fast as it can.

- W6: ``%stream tokens n=10000`` in one cell, against the same stream consumed in a
  cell without rendering (``sum(1 for _ in Model(model_id="tokens").generate(n=10000))``,
  the ``Model`` made beforehand, as the magic caches its own). Overhead is
  ``(render - bare) / bare`` per repeat (the order flips every repeat). The text in
  the cell's last display message must equal the full expected text.
- ``%%deploy``: a quickstart-sized text model (``load_model``, ``predict``,
  ``generate``, ``test``), new deployments (a fresh model id each) and re-deploys
  (the same cell with a changed constant: a new version rolled out). Each result is
  checked with a call afterwards. Timers wrapped around the steps the magic takes
  (the cell check, the signature subprocess, the upload, create/update, the wait)
  tell where the time goes.

At the end the kernel is shut down, the daemon stopped (``python -m jupyter_deploy
stop`` with the kernel's environment) and every process whose command line names the
temporary folder killed (by pid). Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT_DIR = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"

KERNEL_START_TIMEOUT = 60.0   # seconds for the kernel to answer
CELL_TIMEOUT = 180.0          # seconds any one cell may take
STOP_TIMEOUT = 90.0           # seconds `jupyter_deploy stop` may take
DELETE_TIMEOUT = 60.0         # seconds a deleted deployment may stay listed

TARGET_OVERHEAD = 0.10        # W6: rendering costs under 10% of the stream's time
TARGET_UPDATES = 20.0         # W6: at most about 20 display updates per second
TARGET_DEPLOY = 3.0           # %%deploy: run -> ready under 3 s

DISPLAY_TYPES = ("display_data", "update_display_data", "stream")
_ISOLATE_ENV = ("JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT")

TOKENS_CELL = '''%%deploy tokens
import time
from collections.abc import Iterator

from jupyter_deploy import ModelClass


class Tokens(ModelClass):
    """Yields n short tokens as fast as it can (W6), or at a set pace."""

    @ModelClass.method
    def generate(self, n: int) -> Iterator[str]:
        for i in range(1, n + 1):
            yield f"tok{i} "

    @ModelClass.method
    def paced(self, n: int, per_second: float) -> Iterator[str]:
        start = time.monotonic()
        for i in range(1, n + 1):
            ahead = start + i / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            yield f"tok{i} "
'''

# A quickstart-sized text model: load_model, a unary and a streaming method, a test.
QUICKSTART_CELL = '''%%deploy {model_id}
from collections.abc import Iterator

from jupyter_deploy import ModelClass

GREETING = "{greeting}"


class Greeter(ModelClass):
    """Greets; streams a short sentence word by word."""

    def load_model(self):
        self.greeting = GREETING
        self.words = ["a", "small", "text", "model", "streaming", "its", "words"]

    @ModelClass.method
    def predict(self, text: str) -> str:
        """A greeting for text."""
        return f"{{self.greeting}}, {{text}}!"

    @ModelClass.method
    def generate(self, text: str, n: int = 5) -> Iterator[str]:
        """n words after text, one at a time."""
        yield text
        for i in range(n):
            yield " " + self.words[i % len(self.words)]

    def test(self):
        assert self.predict("test") == f"{{GREETING}}, test!"
        assert "".join(self.generate("x", 2)) == "x a small"
'''

# Wrapped in the kernel around the steps %%deploy takes (seconds, summed per cell).
TIMERS_CELL = '''
import functools as _jd_functools, json as _jd_json, time as _jd_time
import jupyter_deploy.client as _jd_client
import jupyter_deploy.client._rollout as _jd_rollout
import jupyter_deploy.client._upload as _jd_upload
import jupyter_deploy.notebook.magics as _jd_magics
_jd_t = {}
def _jd_wrap(owner, name, key):
    fn = getattr(owner, name)
    @_jd_functools.wraps(fn)
    def timed(*args, **kwargs):
        t0 = _jd_time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _jd_t[key] = _jd_t.get(key, 0.0) + _jd_time.perf_counter() - t0
    setattr(owner, name, timed)
_jd_wrap(_jd_magics, "check_cell_source", "check")
_jd_wrap(_jd_upload, "describe_folder", "describe")
_jd_wrap(_jd_client.Client, "upload_model", "upload")
_jd_wrap(_jd_client.Nodepool, "create_deployment", "create")
_jd_wrap(_jd_client.Deployment, "update", "update")
_jd_wrap(_jd_rollout, "wait_ready", "wait")
'''


@dataclass
class Settings:
    repeats_w6: int
    repeats_paced: int
    repeats_deploy: int
    tokens: int
    paced_rate: float = 4000.0  # tokens/s of the paced stream (W6 at a steady pace)


FULL = Settings(repeats_w6=9, repeats_paced=3, repeats_deploy=3, tokens=10_000)
QUICK = Settings(repeats_w6=3, repeats_paced=2, repeats_deploy=2, tokens=10_000)


class CellError(RuntimeError):
    pass


@dataclass
class Cell:
    """What one executed cell sent back."""

    wall: float                     # execute request -> idle + reply, seconds
    first_display: float | None     # execute request -> the first display message, seconds
    display_times: list[float]      # execute request -> each display message received, seconds
    sent_times: list[float]         # each display message's send time in the kernel (header date), epoch s
    counts: dict[str, int]          # iopub message types of this cell
    last_display: dict | None       # the content of the last display_data / update_display_data
    streams: list[str]              # the text of its stream messages
    reply: dict

    @property
    def display_messages(self) -> int:
        return sum(self.counts.get(t, 0) for t in DISPLAY_TYPES)

    def last_text(self) -> str | None:
        """The text the cell shows at the end: the last display's text/plain, else its stdout."""
        if self.last_display is not None:
            return self.last_display.get("data", {}).get("text/plain")
        if self.streams:
            return "".join(self.streams).rstrip("\n")
        return None


class Kernel:
    """A real python3 kernel with its own JUPYTER_DEPLOY_HOME; a context manager."""

    def __init__(self, home: Path):
        from jupyter_client import KernelManager

        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k not in _ISOLATE_ENV}
        self.env["JUPYTER_DEPLOY_HOME"] = str(home / "jd-home")
        self.env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")  # the kernel's command line names home
        self.env["PYTHONUNBUFFERED"] = "1"
        (home / "runtime").mkdir(parents=True, exist_ok=True)
        (home / "cwd").mkdir(parents=True, exist_ok=True)
        self.km = KernelManager(kernel_name="python3")
        self.km.connection_file = str(home / "runtime" / "kernel-bench.json")
        self.kc: Any = None
        self.km.start_kernel(env=self.env, cwd=str(home / "cwd"))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=KERNEL_START_TIMEOUT)

    def run(self, code: str, timeout: float = CELL_TIMEOUT, user_expressions: dict | None = None) -> Cell:
        counts: dict[str, int] = {}
        streams: list[str] = []
        state: dict[str, Any] = {"last": None, "first": None, "idle": None}
        times: list[float] = []
        sent: list[float] = []
        t0 = time.perf_counter()

        def hook(msg: dict) -> None:
            kind = msg["header"]["msg_type"]
            counts[kind] = counts.get(kind, 0) + 1
            if kind in DISPLAY_TYPES:
                times.append(time.perf_counter() - t0)
                date = msg["header"].get("date")
                if hasattr(date, "timestamp"):
                    sent.append(date.timestamp())
                if state["first"] is None:
                    state["first"] = times[0]
            if kind in ("display_data", "update_display_data"):
                state["last"] = msg["content"]
            elif kind == "stream":
                streams.append(msg["content"].get("text", ""))
            elif kind == "error":
                state["error"] = msg["content"]
            elif kind == "status" and msg["content"].get("execution_state") == "idle":
                state["idle"] = time.perf_counter() - t0

        try:
            reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook,
                                                user_expressions=user_expressions or {},
                                                allow_stdin=False)
        except TimeoutError:
            self.km.interrupt_kernel()
            raise CellError(f"cell did not finish in {timeout:g} s:\n{code[:200]}") from None
        wall = time.perf_counter() - t0
        content = reply["content"]
        if content.get("status") != "ok":
            tb = "\n".join(content.get("traceback", [])[-12:])
            tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
            raise CellError(f"cell failed: {content.get('ename')}: {content.get('evalue')}\n{tb}\n"
                            f"--- cell:\n{code[:300]}")
        return Cell(wall=wall, first_display=state["first"], display_times=times, sent_times=sent, counts=counts, last_display=state["last"],
                    streams=streams, reply=content)

    def eval(self, expr: str) -> Any:
        """``expr`` evaluated in the kernel; its value must be JSON (sent as json.dumps)."""
        cell = self.run("", user_expressions={"v": f"__import__('json').dumps({expr})"})
        out = cell.reply["user_expressions"]["v"]
        if out.get("status") != "ok":
            raise CellError(f"{expr}: {out.get('ename')}: {out.get('evalue')}")
        return json.loads(_literal(out["data"]["text/plain"]))  # the repr of the JSON text

    def close(self) -> None:
        try:
            if self.kc is not None:
                self.kc.stop_channels()
        finally:
            try:
                self.km.shutdown_kernel(now=False, restart=False)
            except Exception as e:  # noqa: BLE001 - the caller still kills what names the home
                print(f"kernel shutdown: {e}", flush=True)
                try:
                    self.km.shutdown_kernel(now=True)
                except Exception:  # noqa: BLE001, S110
                    pass


def _literal(text: str) -> str:
    import ast

    return ast.literal_eval(text)


# ---------------------------------------------------------------- teardown


def _leftovers(home: Path) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def teardown(home: Path, env: dict[str, str] | None) -> None:
    """Stop the daemon (and its runners), then kill whatever still names the temporary folder."""
    if env is not None:
        try:
            proc = subprocess.run([sys.executable, "-m", "jupyter_deploy", "stop"], env=env,
                                  capture_output=True, text=True, timeout=STOP_TIMEOUT, check=False)
            if proc.returncode != 0 and "no" not in (proc.stdout + proc.stderr).lower():
                print(f"jupyter_deploy stop: exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[:300]}",
                      flush=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"jupyter_deploy stop: {e}", flush=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _leftovers(home)
        if pids and sig == signal.SIGKILL:
            print(f"killing leftover processes {pids}", flush=True)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 5
        while pids and _leftovers(home) and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------- measurements


def expected_text(n: int) -> str:
    return "".join(f"tok{i} " for i in range(1, n + 1))


_CAPTION = re.compile(r"([\d.]+) tokens/s")


def measure_w6(k: Kernel, n: int, repeats: int, method: str = "generate",
               extra: str = "", label: str = "W6") -> dict[str, Any]:
    """``%stream`` of n tokens against the same stream consumed without rendering, ``repeats`` times."""
    want = expected_text(n)
    k.run("from jupyter_deploy.client import Model\n_jd_bare_model = Model(model_id='tokens')")
    flag = "" if method == "generate" else f" --method {method}"
    stream_code = f"%stream tokens n={n}{extra}{flag}"
    call_args = f"n={n}" + (", " + extra.strip().replace(" ", ", ") if extra.strip() else "")
    bare_code = f"_jd_bare_n = sum(1 for _ in _jd_bare_model.{method}({call_args}))"

    def stream_once() -> dict[str, Any]:
        c = k.run(stream_code)
        text = c.last_text()
        html_part = (c.last_display or {}).get("data", {}).get("text/html", "")
        m = _CAPTION.search(html_part)
        # Send times in the kernel (not arrival: transit jitters); the last message is the
        # final one, sent at close whatever the pace.
        live = (c.sent_times if len(c.sent_times) == len(c.display_times) else c.display_times)[:-1]
        live_rate = (len(live) - 1) / (live[-1] - live[0]) if len(live) > 1 and live[-1] > live[0] else None
        return {"wall": c.wall, "first": c.first_display, "messages": c.display_messages,
                "counts": c.counts, "ok": text == want, "got_len": len(text or ""),
                "kernel_rate": float(m.group(1)) if m else None,
                "live_rate": live_rate,
                "span": (c.display_times[-1] - c.display_times[0]) if len(c.display_times) > 1 else None}

    def bare_once() -> float:
        c = k.run(bare_code)
        got = k.eval("_jd_bare_n")
        if got != n:
            raise CellError(f"the bare stream gave {got} tokens, not {n}")
        return c.wall

    first = stream_once()  # the first of its kind: imports, the magic's Model lookup
    bare_once()            # warm-up
    streams, bares, overheads = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            st, b = stream_once(), bare_once()
        else:
            b = bare_once()
            st = stream_once()
        streams.append(st)
        bares.append(b)
        overheads.append((st["wall"] - b) / b)
        print(f"  {label} repeat {r + 1}: %stream {st['wall']:.3f} s ({st['messages']} display messages, "
              f"final text {'OK' if st['ok'] else 'MISMATCH'}), bare {b:.3f} s, overhead "
              f"{100 * overheads[-1]:+.1f}%", flush=True)
    return {"first": first, "streams": streams, "bares": bares, "overheads": overheads, "n": n,
            "code": stream_code, "bare_code": bare_code}


VIEW_SETUP = """
import time as _jd_time2
from jupyter_deploy.notebook.widgets import StreamView as _JDStreamView
_jd_toks = [f"tok{{i}} " for i in range(1, {n} + 1)]
_jd_s = 0.0
"""
VIEW_CELL = """_jd_t0 = _jd_time2.perf_counter()
_jd_v = _JDStreamView()
for _jd_x in _jd_toks:
    _jd_v.add(_jd_x)
_jd_v.close()
_jd_s = _jd_time2.perf_counter() - _jd_t0
"""
LOOP_CELL = """_jd_t0 = _jd_time2.perf_counter()
_jd_r = []
for _jd_x in _jd_toks:
    _jd_r.append(_jd_x)
_jd_s = _jd_time2.perf_counter() - _jd_t0
"""


def measure_view_alone(k: Kernel, n: int, repeats: int) -> dict[str, Any]:
    """The rendering alone: a StreamView fed n tokens from a list (no stream), against a bare loop."""
    k.run(VIEW_SETUP.format(n=n))
    out: dict[str, list[float]] = {"view cell": [], "view kernel": [], "loop cell": [], "loop kernel": [],
                                   "messages": []}
    want = expected_text(n)
    for r in range(repeats + 1):
        c = k.run(VIEW_CELL)
        inside = k.eval("_jd_s")
        if c.last_text() != want:
            raise CellError("StreamView alone: the final text differs from the expected text")
        c2 = k.run(LOOP_CELL)
        inside2 = k.eval("_jd_s")
        if r == 0:
            continue  # warm-up
        out["view cell"].append(c.wall)
        out["view kernel"].append(inside)
        out["loop cell"].append(c2.wall)
        out["loop kernel"].append(inside2)
        out["messages"].append(c.display_messages)
    out["n"] = n  # type: ignore[assignment]
    print(f"  StreamView alone: cell {statistics.median(out['view cell']):.4f} s, in the kernel "
          f"{statistics.median(out['view kernel']):.4f} s; bare loop cell {statistics.median(out['loop cell']):.4f} s",
          flush=True)
    return out


def view_rows(v: dict[str, Any], bare_stream: list[float]) -> list[str]:
    n = v["n"]
    runs = len(v["view cell"])
    per_token = [(a - b) / n * 1e6 for a, b in zip(v["view kernel"], v["loop kernel"])]
    share = [(a - b) / statistics.median(bare_stream) for a, b in zip(v["view cell"], v["loop cell"])]
    return [
        (f"| where the fast stream's overhead goes: a `StreamView` fed the same {n:,} tokens from a list "
        f"(no stream), cell, s | {_fmt(v['view cell'], 4)} | {runs} |  |"),
        f"| … the same loop appending to a list instead, cell, s | {_fmt(v['loop cell'], 4)} | {runs} |  |",
        (f"| … `StreamView` in the kernel (adds + first and final display), s | {_fmt(v['view kernel'], 4)} "
        f"| {runs} |  |"),
        (f"| … `StreamView.add` and displays per token, beyond the bare loop, µs | {_fmt(per_token, 2)} "
        f"| {runs} |  |"),
        (f"| … rendering alone (view cell − loop cell) as a share of the bare stream's time | "
        f"{_fmt(share, 1, pct=True)} | {runs} |  |"),
    ]


def _parts(k: Kernel) -> dict[str, float]:
    return {str(a): float(b) for a, b in k.eval("_jd_t").items()}


_READY_IN = re.compile(r"ready in ([\d.]+) s")


def deploy_cell(k: Kernel, code: str) -> dict[str, Any]:
    k.run("_jd_t.clear()")
    c = k.run(code)
    parts = _parts(k)
    texts = [c.last_text() or ""]
    # The progress line is a display updated in place; the card comes as the execute_result.
    m = None
    for t in texts:
        m = _READY_IN.search(t)
    return {"wall": c.wall, "ready_in": float(m.group(1)) if m else None, "parts": parts,
            "messages": c.display_messages}


def delete_deployment(k: Kernel, deployment_id: str) -> None:
    k.run(f"""
import time as _t
from jupyter_deploy import Client as _C
_c = _C()
_c.deployment({deployment_id!r}).delete()
_end = _t.monotonic() + {DELETE_TIMEOUT}
while any(d.id == {deployment_id!r} for d in _c.list_deployments()):
    if _t.monotonic() > _end:
        raise TimeoutError("deployment {deployment_id} still listed")
    _t.sleep(0.1)
_c.close()
""")


def check_predict(k: Kernel, model_id: str, greeting: str) -> None:
    got = k.eval(f"Model(model_id={model_id!r}).predict('world')")
    if got != f"{greeting}, world!":
        raise CellError(f"{model_id}: predict gave {got!r}, expected {greeting + ', world!'!r}")


def measure_deploy(k: Kernel, s: Settings) -> dict[str, Any]:
    new, redeploy = [], []
    for i in range(1, s.repeats_deploy + 1):
        model_id = f"quick{i}"
        r = deploy_cell(k, QUICKSTART_CELL.format(model_id=model_id, greeting="Hello"))
        check_predict(k, model_id, "Hello")
        new.append(r)
        print(f"  %%deploy {model_id} (new): {r['wall']:.2f} s (magic says ready in {r['ready_in']} s); "
              f"parts {_fmt_parts(r['parts'])}", flush=True)
        delete_deployment(k, model_id)
    r0 = deploy_cell(k, QUICKSTART_CELL.format(model_id="quickre", greeting="Hello"))
    print(f"  %%deploy quickre (new, before the re-deploys): {r0['wall']:.2f} s", flush=True)
    for i in range(1, s.repeats_deploy + 1):
        greeting = f"Hello v{i + 1}"
        r = deploy_cell(k, QUICKSTART_CELL.format(model_id="quickre", greeting=greeting))
        check_predict(k, "quickre", greeting)
        redeploy.append(r)
        print(f"  %%deploy quickre (re-deploy {i}): {r['wall']:.2f} s (magic says ready in {r['ready_in']} s); "
              f"parts {_fmt_parts(r['parts'])}", flush=True)
    return {"new": new, "redeploy": redeploy}


def _fmt_parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in parts.items())


# ---------------------------------------------------------------- table


def _fmt(values: list[float], decimals: int = 2, pct: bool = False) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if pct:
        values = [100 * v for v in values]
    med = statistics.median(values)
    f = f"{{:,.{decimals}f}}"
    suffix = "%" if pct else ""
    if len(values) == 1:
        return f.format(med) + suffix
    return f"{f.format(med)}{suffix} ({f.format(min(values))}–{f.format(max(values))}{suffix})"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def w6_rows(w6: dict[str, Any], title: str, bare_text: str) -> list[str]:
    n = w6["n"]
    st = w6["streams"]
    walls = [x["wall"] for x in st]
    bares = w6["bares"]
    ups = [x["messages"] / x["wall"] for x in st]
    live = [x["live_rate"] for x in st if x["live_rate"]]
    ok = sum(x["ok"] for x in st)
    runs = len(st)
    over = statistics.median(w6["overheads"])
    msgs = statistics.median(x["messages"] for x in st)
    few = (f" (only {msgs:g} messages in all: the first display, the final one, and what fits between)"
           if statistics.median(ups) > TARGET_UPDATES and msgs <= 3 else "")
    return [
        f"| {title} | median (min–max) | runs | target |",
        "| --- | --- | --- | --- |",
        f"| `{w6['code']}` cell: execute → idle, s | {_fmt(walls, 3)} | {runs} |  |",
        f"| same stream consumed without rendering ({bare_text}), s | {_fmt(bares, 3)} | {runs} |  |",
        (f"| **rendering overhead** (render − bare) / bare, per repeat | {_fmt(w6['overheads'], 1, pct=True)} "
        f"| {runs} | < {TARGET_OVERHEAD:.0%}: {_met(over < TARGET_OVERHEAD)} |"),
        f"| tokens/s shown (n / cell time) | {_fmt([n / w for w in walls], 0)} | {runs} |  |",
        f"| tokens/s without rendering (n / cell time) | {_fmt([n / b for b in bares], 0)} | {runs} |  |",
        (f"| tokens/s in the view's own caption (kernel side) | {_fmt([x['kernel_rate'] for x in st], 0)} "
        f"| {runs} |  |"),
        (f"| display messages per cell (display_data + update_display_data + stream) "
        f"| {_fmt([x['messages'] for x in st], 0)} | {runs} |  |"),
        (f"| **display updates per second** (messages / cell time) | {_fmt(ups, 1)} | {runs} "
        f"| ≤ ~{TARGET_UPDATES:g}/s: {_met(statistics.median(ups) <= TARGET_UPDATES)}{few} |"),
        (f"| live update rate while streaming: (live messages − 1) / time from the first to the last one "
        f"sent (kernel clock; the final message left out) "
        f"| {_fmt(live, 1)} | {len(live)} |  |"),
        f"| first display after execute, s | {_fmt([x['first'] for x in st], 3)} | {runs} |  |",
        (f"| cell time − the view's own elapsed (n / its tokens/s): magic, final message, transit, s "
        f"| {_fmt([x['wall'] - n / x['kernel_rate'] for x in st if x['kernel_rate']], 3)} | {runs} |  |"),
        (f"| final text in the last display message equals the {len(expected_text(n)):,}-character "
        f"expected text | {'OK' if ok == runs else 'MISMATCH'} ({ok}/{runs}) | {runs} |  |"),
        f"| the kernel's first such `%stream`, s | {first_deploy_fmt(w6['first']['wall'])} | 1 |  |",
    ]


def table(w6: dict[str, Any], view: dict[str, Any], paced: dict[str, Any], dep: dict[str, Any], first_deploy: dict[str, Any],
          load_s: float) -> str:
    rows = w6_rows(w6, "W6 notebook rendering, as fast as the model yields",
                   f"`sum(1 for _ in model.generate(n={w6['n']}))`")
    rows += view_rows(view, w6["bares"])
    rows += [""] + w6_rows(paced, "W6 at a steady pace (the model sleeps to a set tokens/s)",
                           "`sum(1 for _ in model.paced(...))`")
    new = dep["new"]
    red = dep["redeploy"]
    keys = ["check", "describe", "upload", "create", "update", "wait"]
    labels = {"check": "the cell check (syntax, names)",
              "describe": "signatures read in a subprocess (part of the upload)",
              "upload": "`upload_model` (describe + pack + UploadModel)",
              "create": "`create_deployment`", "update": "`Deployment.update`",
              "wait": "waiting until ready (replica start, `load_model`, `test()`, polling)"}

    def part_rows(results: list[dict[str, Any]], name: str) -> list[str]:
        out = []
        for key in keys:
            vals = [r["parts"].get(key) for r in results if key in r["parts"]]
            if vals:
                out.append(f"| … {name}: {labels[key]} | {_fmt(vals, 3)} | {len(vals)} |  |")
        rest = [r["wall"] - sum(r["parts"].get(x, 0.0) for x in keys if x != "describe") for r in results]
        out.append(f"| … {name}: the rest (folder write, card display, messages) | {_fmt(rest, 3)} "
                   f"| {len(rest)} |  |")
        return out

    nw = [r["wall"] for r in new]
    rw = [r["wall"] for r in red]
    rows += [
        "",
        "| `%%deploy` cell (quickstart-sized text model) | median (min–max) | runs | target |",
        "| --- | --- | --- | --- |",
        (f"| **new deployment**: run → ready (execute → idle), s | {_fmt(nw, 2)} | {len(nw)} "
        f"| < {TARGET_DEPLOY:g} s: {_met(statistics.median(nw) < TARGET_DEPLOY)} |"),
        f"| … \"ready in\" shown by the magic, s | {_fmt([r['ready_in'] for r in new], 2)} | {len(new)} |  |",
        *part_rows(new, "new"),
        (f"| **re-deploy** (changed cell: new version rolled out), s | {_fmt(rw, 2)} | {len(rw)} "
        f"| < {TARGET_DEPLOY:g} s: {_met(statistics.median(rw) < TARGET_DEPLOY)} |"),
        f"| … \"ready in\" shown by the magic, s | {_fmt([r['ready_in'] for r in red], 2)} | {len(red)} |  |",
        *part_rows(red, "re-deploy"),
        (f"| reference: the kernel's first `%%deploy` (`tokens`; starts the daemon), s "
        f"| {first_deploy_fmt(first_deploy['wall'])} | 1 |  |"),
        f"| reference: `%load_ext jupyter_deploy`, s | {first_deploy_fmt(load_s)} | 1 |  |",
    ]
    return "\n".join(rows)


def first_deploy_fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def machine() -> str:
    import ipykernel
    import jupyter_client

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import ipywidgets

        widgets = ipywidgets.__version__
    except ImportError:
        widgets = "missing"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"nproc {os.cpu_count()}, {cpu or platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, ipykernel {ipykernel.__version__}, "
            f"jupyter_client {jupyter_client.__version__}, ipywidgets {widgets}; load average at start {load}")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test, not for the record)")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    p.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (at least 2)")
    p.add_argument("--tokens", type=int, default=None, help="tokens in the W6 stream (default 10000)")
    args = p.parse_args(argv)
    s = Settings(**vars(QUICK if args.quick else FULL))
    if args.repeats is not None:
        s.repeats_w6 = s.repeats_paced = s.repeats_deploy = max(2, args.repeats)
    if args.tokens is not None:
        s.tokens = max(1, args.tokens)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    machine_info = machine()
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="jdnbbench-"))
    kernel: Kernel | None = None
    env = None
    try:
        print(f"kernel: starting (JUPYTER_DEPLOY_HOME={home / 'jd-home'})", flush=True)
        kernel = Kernel(home)
        env = kernel.env
        load_s = kernel.run("%load_ext jupyter_deploy").wall
        kernel.run(TIMERS_CELL)
        first_deploy = deploy_cell(kernel, TOKENS_CELL)
        print(f"  first %%deploy (tokens, daemon start included): {first_deploy['wall']:.2f} s", flush=True)
        print("W6: %stream", flush=True)
        w6 = measure_w6(kernel, s.tokens, s.repeats_w6)
        view = measure_view_alone(kernel, s.tokens, s.repeats_w6)
        print(f"W6 paced: %stream at {s.paced_rate:g} tokens/s", flush=True)
        paced = measure_w6(kernel, s.tokens, s.repeats_paced, method="paced",
                           extra=f" per_second={s.paced_rate:g}", label="W6 paced")
        print("%%deploy", flush=True)
        dep = measure_deploy(kernel, s)
    finally:
        if kernel is not None:
            kernel.close()
        teardown(home, env)
    elapsed = time.perf_counter() - t_start
    mode = "quick" if args.quick else "full"
    header = (f"Run {started:%Y-%m-%d %H:%M %Z} (notebook bench, {mode}, {s.repeats_w6} W6 repeats, {s.repeats_paced} paced, "
              f"{s.repeats_deploy} deploys of each kind, {elapsed:.0f} s). Machine: {machine_info}.")
    body = table(w6, view, paced, dep, first_deploy, load_s)
    notes = (f"A real python3 kernel driven by jupyter_client `execute_interactive(output_hook=...)`; a cell's "
             f"time runs from the execute request to its idle status. W6: {w6['n']:,} tokens (`tok1 `, "
             f"`tok2 `, ...) from a deployed model, `%stream` against the same stream consumed in a cell "
             f"without rendering, the order flipped every repeat; the paced stream yields the same tokens at {s.paced_rate:g} tokens/s, "
             f"so the view's steady update rate shows. `%%deploy`: a model with `load_model`, "
             f"`predict`, `generate` and `test()`; new = a fresh model id each (deleted after), "
             f"re-deploy = the same cell with a changed constant; every deploy checked by a `predict` call "
             f"after it. Parts come from timers wrapped around the magic's steps in the kernel.")
    text = f"{header}\n\n{body}\n\n{notes}\n"
    print()
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "notebook_latest.md").write_text(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} — notebook (W6, %%deploy)\n\n{text}")
        print(f"appended to {RESULTS}")
    every = [w6["first"], *w6["streams"], paced["first"], *paced["streams"]]
    mismatches = [x for x in every if not x["ok"]]
    if mismatches:
        print(f"MISMATCH: the final text of {len(mismatches)} %stream cells differs from the expected text "
              f"(lengths {[x['got_len'] for x in mismatches]})", flush=True)
        return 1
    print("final text: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
