"""The JupyterLab sidebar in a real browser: a real `jupyter lab`, Debian's chromium, Playwright.

Skipped (with the reason) where chromium or Playwright is missing; `.ci/run` installs
both. The panel's screenshot is left in ``test-artifacts/`` (``JUPYTER_DEPLOY_ARTIFACTS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemon_helpers import (
    alive,
    daemon_pid,
    deployed_echo,
    kill_everything,
    wait_for,
    wait_for_state,
)
from lab_helpers import CHROMIUM, browser_page, open_sidebar, running_lab

pytestmark = pytest.mark.timeout(300)

ARTIFACTS = Path(os.environ.get("JUPYTER_DEPLOY_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))

# First in the module: it drives its own browser, which Playwright's sync API allows only while no
# other (the module's `page`) is open.
def test_with_no_daemon_the_panel_says_so_once_and_start_runs_one(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    home = tmp_path_factory.mktemp("no_daemon_home")
    try:
        with running_lab(tmp_path_factory.mktemp("lab_no_daemon"), env={"JUPYTER_DEPLOY_HOME": str(home)}) \
                as (base, token, _):
            with browser_page(f"{base}/lab?token={token}") as page:
                panel = open_sidebar(page)
                notice = panel.locator(".jd-Daemon")
                notice.wait_for(timeout=30_000)
                text = panel.inner_text()
                assert "No jupyter_deploy daemon is running." in text and "`" not in text, text
                assert text.count("daemon is running") == 1 and panel.locator(".jd-Error").count() == 0
                assert not (home / "daemon.json").exists()  # opening the lab starts none
                panel.screenshot(path=str(_artifacts() / "sidebar-no-daemon.png"))

                panel.locator("button.jd-StartDaemonButton").click()
                wait_for(lambda: (home / "daemon.json").exists() and alive(daemon_pid(home)), 60,
                         "the background daemon")
                empty = panel.locator(".jd-Empty", has_text="No deployments yet")
                empty.wait_for(timeout=30_000)
                notice.wait_for(state="detached", timeout=30_000)
                panel.locator('.jd-Nodepool[data-nodepool-id="local"]').wait_for(timeout=30_000)
                # The empty state is said once: not again under the empty nodepool.
                assert panel.inner_text().count("No deployments") == 1, panel.inner_text()
                panel.screenshot(path=str(_artifacts() / "sidebar-started.png"))
    finally:
        kill_everything(home)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    """A daemon in its own home with the model ``echo`` deployed as ``echo`` on local/local."""
    with deployed_echo(tmp_path_factory, "browser_home") as client_and_home:
        yield client_and_home


@pytest.fixture(scope="module")
def page(deployed, tmp_path_factory: pytest.TempPathFactory):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with running_lab(tmp_path_factory.mktemp("lab")) as (base, token, _):
        with browser_page(f"{base}/lab/tree/scratch.ipynb?token={token}") as page:
            yield page


def test_sidebar_shows_stops_and_inserts_a_predict_cell(deployed, page):
    client, _ = deployed
    panel = open_sidebar(page)
    row = panel.locator('.jd-Deployment[data-deployment-id="echo"]')
    row.locator('.jd-StateBadge[data-state="RUNNING"]').wait_for(timeout=30_000)
    # Clusters, nodepools and models refresh on their own (slower) poll: wait for them too.
    panel.locator('.jd-Cluster[data-cluster-id="local"] .jd-Nodepool[data-nodepool-id="local"]').wait_for(
        timeout=30_000)
    versions = panel.locator('.jd-Model[data-model-url="local/default/models/echo"] .jd-ModelVersion')
    versions.first.wait_for(timeout=30_000)
    assert versions.count() == 1

    row.click()
    details = panel.locator(".jd-Details")
    details.wait_for(timeout=10_000)
    assert "local/default/models/echo" in details.inner_text()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "sidebar.png"))

    # Stop from the panel: the daemon stops it, and the badge follows.
    details.locator("button.jd-StopButton").click()
    wait_for_state(client, "echo", "STOPPED", 60, "the deployment to stop")
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


def test_the_panel_follows_the_dark_theme(page):
    panel = page.locator("#jupyter-deploy-sidebar")
    light = _luminance(panel.evaluate(BACKGROUND))
    page.locator('.lm-MenuBar-itemLabel:text-is("Settings")').click()
    page.locator('.lm-Menu-itemLabel:text-is("Theme")').hover()
    page.locator('.lm-Menu-itemLabel:text-is("JupyterLab Dark")').click()
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_timeout(500)  # the theme's stylesheet applies after the attribute flips
    dark = _luminance(panel.evaluate(BACKGROUND))
    text = _luminance(panel.locator(".jd-NodeName").first.evaluate("e => getComputedStyle(e).color"))
    assert light > 0.5 > dark and text > dark + 0.3, (light, dark, text)
    panel.screenshot(path=str(ARTIFACTS / "sidebar-dark.png"))


# The colour a reader sees behind an element: the first ancestor's that is not transparent.
BACKGROUND = """e => {
    for (let n = e; n; n = n.parentElement) {
        const c = getComputedStyle(n).backgroundColor;
        if (c !== "transparent" && !/^rgba\\(.*, 0\\)$/.test(c)) return c;
    }
    return "rgb(255, 255, 255)";
}"""


def _luminance(css_color: str) -> float:
    """0 (black) to 1 (white) for an ``rgb(...)``/``rgba(...)`` CSS colour."""
    r, g, b = (int(float(v)) for v in css_color[css_color.index("(") + 1:-1].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
