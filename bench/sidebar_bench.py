"""Sidebar latency: how long a deployment's state change takes to show in the panel.

    python bench/sidebar_bench.py [--repeats N] [--record]

A daemon in a temporary home serves one echo deployment; a real `jupyter lab` and a
headless Debian chromium show the panel. Each repeat stops (then starts) the deployment
through the Python client, notes when the daemon first reports the new state (the
client polls it every 20 ms), and waits for the panel's badge to show it. The target
(issue 6) is under 2 s. Needs chromium and Playwright (see .ci/run).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from lab_helpers import browser_page, open_sidebar, running_lab

TARGET_S = 2.0
MODEL = '''from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return text
'''


def wait_state(dep, state: str, timeout: float = 60.0) -> float:
    """Poll the daemon until ``dep`` is in ``state``; the moment it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dep.state == state:
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"deployment not {state} after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="stop/start cycles (default 5)")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="jdsidebar-"))
    os.environ["JUPYTER_DEPLOY_HOME"] = str(root / "home")
    for key in ("JUPYTER_DEPLOY_ADDRESS", "JUPYTER_DEPLOY_PAT"):
        os.environ.pop(key, None)
    from jupyter_deploy import Client
    from jupyter_deploy.client._daemon import stop

    folder = root / "echo"
    (folder / "1").mkdir(parents=True)
    (folder / "config.yaml").write_text("model:\n  id: echo\n")
    (folder / "requirements.txt").write_text("")
    (folder / "1" / "model.py").write_text(MODEL)
    client = Client()
    latencies: list[float] = []
    try:
        client.upload_model(folder)
        dep = client.compute_cluster("local").nodepool("local").create_deployment(
            "echo", worker={"model": {"id": "echo"}}).wait_until_ready(120)
        with running_lab(root / "lab") as (base, token, _):
            with browser_page(f"{base}/lab/tree/scratch.ipynb?token={token}") as page:
                badge = open_sidebar(page).locator('.jd-Deployment[data-deployment-id="echo"] .jd-StateBadge')
                badge.and_(page.locator('[data-state="RUNNING"]')).wait_for(timeout=60_000)
                for _ in range(args.repeats):
                    for action, state in (("stop", "STOPPED"), ("start", "RUNNING")):
                        getattr(dep, action)()
                        changed = wait_state(dep, state)
                        badge.and_(page.locator(f'[data-state="{state}"]')).wait_for(timeout=30_000)
                        latencies.append(time.monotonic() - changed)
    finally:
        client.close()
        stop()  # the daemon of the temporary home, and its runners
    med, worst = statistics.median(latencies), max(latencies)
    now = datetime.datetime.now(datetime.UTC)
    text = (f"Run {now:%Y-%m-%d %H:%M %Z} (sidebar, {len(latencies)} state changes; load average "
            f"{os.getloadavg()[0]:.2f}).\n\n"
            "| measure | value | target |\n| --- | --- | --- |\n"
            f"| state change -> badge, median | {med:.2f} s | < {TARGET_S:g} s |\n"
            f"| state change -> badge, worst | {worst:.2f} s | < {TARGET_S:g} s |\n")
    print(text)
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "sidebar_latest.md").write_text(text)
    if args.record:
        with (BENCH / "RESULTS.md").open("a") as f:
            f.write(f"\n## {now:%Y-%m-%d %H:%M %Z} — sidebar latency\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
