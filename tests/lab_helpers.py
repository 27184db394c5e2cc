"""A real `jupyter lab` and a headless Debian chromium, for the browser test and bench/.

Both are isolated from the user's own Jupyter configuration and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that let Debian's chromium run headless as root in a container, with no network chatter.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left li[data-id="jupyter-deploy-sidebar"]'
#: The checkout's built sidebar (committed; see labextension/README.md): the browser tests run it,
#: rather than whichever build an earlier `pip install` left in the environment.
BUILT = Path(__file__).resolve().parents[1] / "jupyter_deploy" / "labextension"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_lab(root: Path, timeout: float = 90, env: dict[str, str] | None = None
                ) -> Iterator[tuple[str, str, Path]]:
    """`jupyter lab` on a free loopback port with a random token: yields (base URL, token, root dir).

    The root dir holds ``scratch.ipynb`` (one code cell); the environment's
    JUPYTER_DEPLOY_* variables reach the server extension unchanged (``env`` overrides them).
    The sidebar is the checkout's build (``BUILT``), where there is one.
    """
    work = root / "work"
    work.mkdir(parents=True)
    (work / "scratch.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {}, "outputs": [],
                   "source": "x = 1"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # Keep the "receive Jupyter news?" toast off the screenshots.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    if (BUILT / "package.json").is_file():  # the data dir's labextensions come before the environment's
        (root / "data" / "labextensions").mkdir(parents=True)
        (root / "data" / "labextensions" / "jupyter-deploy").symlink_to(BUILT)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), IPYTHONDIR=str(root / "ipython"), **(env or {}))
    port, token = _free_port(), secrets.token_hex(16)
    log_path = root / "lab.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
             f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={root / 'settings'}",
             f"--LabApp.workspaces_dir={root / 'workspaces'}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("jupyter lab did not come up:\n" + log_path.read_text()[-3000:])
                    time.sleep(0.2)
            yield base, token, work
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def browser_page(url: str, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright page of headless chromium at ``url`` (needs chromium and playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            yield page
        finally:
            browser.close()


def open_sidebar(page: Any) -> Any:
    """Click the sidebar's tab (it appears 5 s or so after the page on 2 cores); the panel."""
    page.locator(SIDEBAR_TAB).click(timeout=60_000)
    return page.locator("#jupyter-deploy-sidebar")
