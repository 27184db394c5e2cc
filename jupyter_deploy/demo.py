"""``jupyter-deploy demo``: run the quickstart notebook headless and print what it shows.

For machines without a browser: the notebook ``notebooks/quickstart.ipynb`` of a
checkout is executed with a real kernel (nbclient) in a temporary copy, and each
code cell's first line is printed followed by its plain-text outputs::

    $ jupyter-deploy demo
    [1] %load_ext jupyter_deploy
    [2] %%deploy quickstart
        quickstart v1: deployment quickstart RUNNING on local/local, 1 replica, ready in 0.9 s
        ...
    [3] %predict quickstart hello
        'echo: hello'

A failing cell ends the run with a short message naming the cell and the error,
and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["NOTEBOOK", "find_notebook", "main", "transcript"]

#: The notebook the demo runs, relative to a checkout's root.
NOTEBOOK = Path("notebooks") / "quickstart.ipynb"
_PLAIN = "text/plain"
_MAX_LINES = 30  # of one output, so a long log or table does not flood the terminal


def find_notebook(start: Path | None = None) -> Path | None:
    """``notebooks/quickstart.ipynb`` in ``start`` (default: the current folder) or a parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / NOTEBOOK
        if candidate.is_file():
            return candidate
    return None


def _indent(text: str) -> list[str]:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + [f"... ({len(lines) - _MAX_LINES} more lines)"]
    return ["    " + line for line in lines]


def _output_lines(output: Any) -> list[str]:
    kind = output.get("output_type")
    if kind == "stream":
        return _indent(output.get("text", ""))
    if kind in ("execute_result", "display_data"):
        text = output.get("data", {}).get(_PLAIN)
        return _indent(text) if text else []
    if kind == "error":
        return _indent(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return []


def transcript(nb: Any) -> list[str]:
    """Each executed code cell: ``[n] first line``, then its plain-text outputs, in order."""
    lines: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code" or cell.get("execution_count") is None:
            continue
        source = cell.get("source", "")
        first = source.strip().splitlines()[0] if source.strip() else ""
        lines.append(f"[{cell['execution_count']}] {first}")
        for output in cell.get("outputs", []):
            lines.extend(_output_lines(output))
    return lines


def _failure(nb: Any, error: BaseException) -> str:
    """One short line: which cell failed and with what."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else ():
            if output.get("output_type") == "error":
                first = cell.get("source", "").strip().splitlines()[0:1]
                evalue = str(output.get("evalue", "")).strip().splitlines()[0:1]
                return (f"cell {index + 1} ({first[0] if first else ''}) failed: "
                        f"{output.get('ename', 'Error')}: {evalue[0] if evalue else ''}")
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"


def main(argv: list[str] | None = None) -> int:
    """Execute the quickstart notebook headless; print its transcript; 0 when every cell ran."""
    parser = argparse.ArgumentParser(prog="jupyter-deploy demo", description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=None,
                        help=f"the notebook to run (default: {NOTEBOOK} of the checkout you are in)")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds one cell may take (default: 300)")
    parser.add_argument("--kernel", default="python3", help="the kernel to run it with (default: python3)")
    args = parser.parse_args(argv)

    source = args.notebook or find_notebook()
    if source is None or not source.is_file():
        where = args.notebook or f"{NOTEBOOK} here or in a parent folder"
        print(f"error: cannot find {where}; run `jupyter-deploy demo` from a checkout of "
              "jupyter_deploy (the notebooks are not part of the installed package)", file=sys.stderr)
        return 1

    import nbformat
    from nbclient import NotebookClient

    print(f"running {source} headless (kernel {args.kernel}) ...", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jupyter_deploy_demo_") as tmp:
        copy = Path(tmp) / source.name
        shutil.copyfile(source, copy)
        nb = nbformat.read(copy, as_version=4)
        client = NotebookClient(nb, kernel_name=args.kernel, timeout=args.timeout,
                                resources={"metadata": {"path": tmp}})
        error: BaseException | None = None
        try:
            client.execute()
        except Exception as e:  # noqa: BLE001 - a failing cell, no such kernel, a dead kernel, a timeout
            error = e
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
    print("\n".join(transcript(nb)), flush=True)
    if error is not None:
        print(f"error: {_failure(nb, error)}", file=sys.stderr)
        return 1
    print(f"done: {sum(c.cell_type == 'code' for c in nb.cells)} cells in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
