"""Import time: ``import jupyter_deploy`` and ``%load_ext jupyter_deploy`` (issue 18).

Each sample is a fresh interpreter. Rounds run, in an order that flips every round:

- ``bare``: ``python -c pass`` (what the interpreter and ``site``, with this machine's ``.pth``
  files, cost before any of our code runs);
- ``import`` per revision: ``python -c "import jupyter_deploy"``, timed from outside (wall time of
  the process, and its CPU time from ``getrusage(RUSAGE_CHILDREN)``); reported raw and net of the
  same round's ``bare``;
- ``load_ext`` per revision: a process that starts a real IPython shell
  (``InteractiveShell.instance()``) and then times ``%load_ext jupyter_deploy`` inside itself
  (wall and ``process_time``), so IPython's own start-up is not counted.

A revision is a folder that holds a ``jupyter_deploy`` package (put first on ``PYTHONPATH``):
``WORKTREE`` is this checkout (copied, uncommitted changes included); ``--rev old=main`` exports
branch ``main`` with ``git archive``. Each is measured in a copy of its own under a temporary
folder, with the .pyc files the warm-up rounds write there (``--no-pyc``: none, every import
compiles our source, as a checkout under PYTHONDONTWRITEBYTECODE=1 does).
With two revisions the table also gives the median over rounds of new/old per round.

    python bench/import_bench.py                          # this checkout, 21 rounds
    python bench/import_bench.py --rev old=main --rev new=WORKTREE
    python bench/import_bench.py --rounds 41 --json out.json
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The children's working folder: ``python -c`` puts it first on sys.path, so it must hold no package.
_NEUTRAL = tempfile.mkdtemp(prefix="import-bench-cwd-")
atexit.register(shutil.rmtree, _NEUTRAL, True)

#: Runs in the child: IPython first (not timed), then the magic, timed from inside.
LOAD_EXT = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
w, c = time.perf_counter(), time.process_time()
ip.run_line_magic("load_ext", "jupyter_deploy")
w, c = time.perf_counter() - w, time.process_time() - c
assert "deploy" in ip.magics_manager.magics["cell"], "the extension registered no %%deploy"
print(json.dumps({"wall": w, "cpu": c}))
"""


def _export(ref: str, into: Path) -> Path:
    """``jupyter_deploy`` as it is at git ``ref``, under a folder of its own."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "jupyter_deploy"],
                          capture_output=True, check=True).stdout
    folder = into / ref.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(folder)
    return folder


#: Set by ``--no-pyc``: keep PYTHONDONTWRITEBYTECODE as the caller has it.
_KEEP_NO_BYTECODE = False


def _env(path: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if not _KEEP_NO_BYTECODE:
        # An installed package has its .pyc files (pip compiles them); without them every import
        # of ours compiles its source, which is most of what a checkout under
        # PYTHONDONTWRITEBYTECODE=1 measures. The warm-up rounds write them (under __pycache__).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, stdout) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=_NEUTRAL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def _check_revision(name: str, path: Path) -> None:
    # A revision whose package is not the one imported would measure the editable install.
    code = "import jupyter_deploy, sys; print(jupyter_deploy.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(path), capture_output=True,
                         text=True, check=True, cwd=_NEUTRAL).stdout.strip()
    if not Path(out).resolve().is_relative_to(path.resolve()):
        sys.exit(f"revision {name}: imported {out}, not the package under {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", action="append", default=[],
                        help="NAME=GITREF or NAME=WORKTREE (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--no-load-ext", action="store_true", help="only the import rows")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument("--kernel", type=int, default=0, metavar="N",
                        help="also N rounds of %%load_ext in a fresh jupyter kernel per revision, timed "
                             "as a cell from the execute request to its reply (notebook_bench's way)")
    parser.add_argument("--no-pyc", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as set (every import compiles our source)")
    args = parser.parse_args()
    global _KEEP_NO_BYTECODE
    _KEEP_NO_BYTECODE = args.no_pyc

    tmp = Path(tempfile.mkdtemp(prefix="import-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    revisions: dict[str, Path] = {}
    for spec in args.rev or ["this=WORKTREE"]:
        name, _, ref = spec.partition("=")
        if not ref:
            sys.exit(f"--rev {spec!r}: write NAME=GITREF or NAME=WORKTREE")
        if ref == "WORKTREE":
            # A copy without __pycache__, as an export is: with --no-pyc neither side may find
            # .pyc files an earlier run wrote.
            revisions[name] = tmp / "WORKTREE"
            shutil.copytree(ROOT / "jupyter_deploy", tmp / "WORKTREE" / "jupyter_deploy",
                            ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
        else:
            revisions[name] = _export(ref, tmp)
    for name, path in revisions.items():
        _check_revision(name, path)

    py = sys.executable
    jobs: list[tuple[str, list[str], Path | None]] = [("bare", [py, "-c", "pass"], None)]
    for name, path in revisions.items():
        jobs.append((f"import {name}", [py, "-c", "import jupyter_deploy"], path))
        if not args.no_load_ext:
            jobs.append((f"load_ext {name}", [py, "-c", LOAD_EXT], path))
    samples: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in jobs}
    for _ in range(2):  # warm the file cache and the .pyc files; not counted
        for _label, cmd, path in jobs:
            _timed(cmd, _env(path))
    for r in range(args.rounds):
        for label, cmd, path in (jobs if r % 2 == 0 else jobs[::-1]):
            wall, cpu, stdout = _timed(cmd, _env(path))
            sample = {"wall": wall, "cpu": cpu}
            if label.startswith("load_ext"):
                inner = json.loads(stdout.strip().splitlines()[-1])
                sample = {"wall": inner["wall"], "cpu": inner["cpu"], "process_wall": wall}
            samples[label].append(sample)

    kernel = _kernel_rounds(revisions, args.kernel) if args.kernel else {}

    def med(label: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[label]) * 1000

    bare = samples["bare"]
    pyc = ("without .pyc files (PYTHONDONTWRITEBYTECODE)" if args.no_pyc and
           os.environ.get("PYTHONDONTWRITEBYTECODE") else "with .pyc files")
    lines = [f"# Import time ({args.rounds} fresh processes per row, medians, {pyc}, "
             f"load average {os.getloadavg()[0]:.2f})", "",
             "| what | wall ms | CPU ms | wall ms net of bare | CPU ms net of bare |",
             "|---|---:|---:|---:|---:|",
             f"| `python -c pass` (bare) | {med('bare', 'wall'):.1f} | {med('bare', 'cpu'):.1f} | | |"]
    for name in revisions:
        label = f"import {name}"
        net_w = statistics.median(s["wall"] - b["wall"] for s, b in zip(samples[label], bare)) * 1000
        net_c = statistics.median(s["cpu"] - b["cpu"] for s, b in zip(samples[label], bare)) * 1000
        lines.append(f"| `import jupyter_deploy` ({name}) | {med(label, 'wall'):.1f} | "
                     f"{med(label, 'cpu'):.1f} | {net_w:.1f} | {net_c:.1f} |")
    if not args.no_load_ext:
        for name in revisions:
            label = f"load_ext {name}"
            lines.append(f"| `%load_ext jupyter_deploy` after IPython is up ({name}) | "
                         f"{med(label, 'wall'):.1f} | {med(label, 'cpu'):.1f} | | |")
    for name, rows in kernel.items():
        cell = statistics.median(r["load_ext"] for r in rows) * 1000
        net = statistics.median(r["load_ext"] - r["pass"] for r in rows) * 1000
        lines.append(f"| `%load_ext jupyter_deploy` as a cell in a fresh kernel ({name}, {len(rows)} kernels; "
                     f"net of a `pass` cell: {net:.1f}) | {cell:.1f} | | | |")
    names = list(revisions)
    if len(names) >= 2:
        old = names[0]
        lines += ["", f"Median over rounds of the per-round ratio to `{old}` (import net of bare; "
                      "load_ext as timed inside):", ""]
        for new in names[1:]:
            kinds = [("import", True)] + ([] if args.no_load_ext else [("load_ext", False)])
            for kind, net in kinds:
                for key in ("wall", "cpu"):
                    ratios = []
                    for i in range(args.rounds):
                        a = samples[f"{kind} {old}"][i][key] - (bare[i][key] if net else 0)
                        b = samples[f"{kind} {new}"][i][key] - (bare[i][key] if net else 0)
                        if a > 0:
                            ratios.append(b / a)
                    if ratios:
                        lines.append(f"- {kind} {key}: {new}/{old} = {statistics.median(ratios):.2f}")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({**samples, "kernel": kernel}, indent=1))


def _kernel_rounds(revisions: dict[str, Path], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Per revision, ``rounds`` fresh kernels: the wall time of a ``pass`` cell, then of
    ``%load_ext jupyter_deploy`` (the first cell that imports our code), each from the
    execute request to the reply; the order of the revisions flips every round."""
    from jupyter_client.manager import KernelManager

    out: dict[str, list[dict[str, float]]] = {name: [] for name in revisions}
    names = list(revisions)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            with tempfile.TemporaryDirectory() as home:
                env = {**_env(revisions[name]), "JUPYTER_DEPLOY_HOME": home}
                km = KernelManager(kernel_name="python3")
                km.start_kernel(env=env, cwd=_NEUTRAL)
                kc = km.client()
                try:
                    kc.start_channels()
                    kc.wait_for_ready(timeout=60)
                    times = {}
                    for key, code in (("pass", "pass"), ("load_ext", "%load_ext jupyter_deploy")):
                        start = time.perf_counter()
                        reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
                        times[key] = time.perf_counter() - start
                        if reply["content"]["status"] != "ok":
                            sys.exit(f"revision {name}: {code} failed in the kernel: {reply['content']}")
                    out[name].append(times)
                finally:
                    kc.stop_channels()
                    km.shutdown_kernel(now=True)
    return out


if __name__ == "__main__":
    main()
