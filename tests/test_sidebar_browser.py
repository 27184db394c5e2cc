"""The JupyterLab sidebar in a real browser: a real `jupyter lab`, Debian's chromium, Playwright.

Skipped (with the reason) where chromium or Playwright is missing; `.ci/run` installs
both. The panel's screenshot is left in ``test-artifacts/`` (``JUPYTER_DEPLOY_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from daemon_helpers import isolated_home, wait_for

from jupyter_deploy import Client

pytestmark = pytest.mark.timeout(300)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("JUPYTER_DEPLOY_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))
# Flags that let Debian's chromium run headless as root in a container, with no network chatter.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

MODEL = '''
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return "echo: " + text
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    """A daemon in its own home with the model ``echo`` deployed as ``echo`` on local/local."""
    with isolated_home(tmp_path_factory, "browser_home") as home:
        folder = tmp_path_factory.mktemp("echo_model")
        (folder / "1").mkdir()
        (folder / "config.yaml").write_text("model:\n  id: echo\n")
        (folder / "requirements.txt").write_text("")
        (folder / "1" / "model.py").write_text(textwrap.dedent(MODEL))
        client = Client()
        client.upload_model(folder)
        client.compute_cluster("local").nodepool("local").create_deployment(
            "echo", worker={"model": {"id": "echo"}}).wait_until_ready(120)
        yield client, home
        client.close()


@pytest.fixture(scope="module")
def lab(deployed, tmp_path_factory: pytest.TempPathFactory):
    """A real `jupyter lab` on loopback with a token, isolated from the user's Jupyter config."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "work"
    work.mkdir()
    (work / "scratch.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {}, "outputs": [],
                   "source": "x = 1"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    settings = root / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    # Keep the "receive Jupyter news?" toast off the screenshot.
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), IPYTHONDIR=str(root / "ipython"))
    port, token = _free_port(), secrets.token_hex(16)
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            assert proc.poll() is None, (root / "lab.log").read_text()[-3000:]
            return False
    try:
        wait_for(up, 90, "jupyter lab to answer")
        yield base, token, work
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    base, token, _ = lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/lab/tree/scratch.ipynb?token={token}")
        yield page
        browser.close()


def test_sidebar_shows_stops_and_inserts_a_predict_cell(deployed, lab, page):
    client, _ = deployed
    # The sidebar's tab comes up 5 s or so after the page on 2 cores.
    page.locator('.jp-SideBar.jp-mod-left li[data-id="jupyter-deploy-sidebar"]').click(timeout=60_000)
    panel = page.locator("#jupyter-deploy-sidebar")
    row = panel.locator('.jd-Deployment[data-deployment-id="echo"]')
    row.locator('.jd-StateBadge[data-state="RUNNING"]').wait_for(timeout=30_000)
    assert panel.locator('.jd-Cluster[data-cluster-id="local"] .jd-Nodepool[data-nodepool-id="local"]').count() == 1
    assert panel.locator('.jd-Model[data-model-url="local/default/models/echo"] .jd-ModelVersion').count() == 1

    row.click()
    details = panel.locator(".jd-Details")
    details.wait_for(timeout=10_000)
    assert "local/default/models/echo" in details.inner_text()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "sidebar.png"))

    # Stop from the panel: the daemon stops it, and the badge follows.
    details.locator("button.jd-StopButton").click()
    wait_for(lambda: client.deployment("echo").state == "STOPPED", 60, "the deployment to stop")
    row.locator('.jd-StateBadge[data-state="STOPPED"]').wait_for(timeout=10_000)

    # The predict cell lands below the active cell of the open notebook.
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=30_000)
    details.locator("button.jd-InsertPredictButton").click()
    cells = page.locator(".jp-Notebook .jp-Cell")
    wait_for(lambda: cells.count() == 2, 10, "a second cell")
    source = cells.nth(1).locator(".cm-content").inner_text()
    assert source.startswith("%predict local/default/models/echo --deployment-id echo"), source
    panel.screenshot(path=str(ARTIFACTS / "sidebar-stopped.png"))


def test_a_state_change_made_elsewhere_shows_within_seconds(deployed, page):
    client, _ = deployed
    panel = page.locator("#jupyter-deploy-sidebar")
    badge = panel.locator('.jd-Deployment[data-deployment-id="echo"] .jd-StateBadge')
    assert badge.get_attribute("data-state") == "STOPPED"
    client.deployment("echo").start().wait_until_ready(60)
    # The panel polls each second and listens to the server's events; the bound leaves room
    # for a loaded machine (the latency itself is measured in bench/, not asserted here).
    badge.and_(page.locator('[data-state="RUNNING"]')).wait_for(timeout=30_000)
