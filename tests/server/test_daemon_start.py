"""The sidebar's Start button: with no daemon, the API says so (503); Start runs the background
daemon as the first ``Client()`` does, and the panel's calls answer."""

from __future__ import annotations

import json

import pytest
import tornado.httpclient
from daemon_helpers import alive, daemon_pid, isolated_home

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    with isolated_home(tmp_path_factory, "start_home") as home:
        yield home


async def test_start_runs_the_background_daemon(home, jp_fetch):
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_fetch("jupyter-deploy", "api", "deployments")
    assert info.value.code == 503
    assert json.loads(info.value.response.body)["message"] == "No jupyter_deploy daemon is running."
    assert not (home / "daemon.json").exists()

    response = await jp_fetch("jupyter-deploy", "api", "daemon", "start", method="POST", body="{}")
    started = json.loads(response.body)
    assert started["user_id"] == "local" and started["address"].startswith("127.0.0.1:")
    assert alive(daemon_pid(home))  # in the background, as Client() starts it
    assert json.loads((await jp_fetch("jupyter-deploy", "api", "deployments")).body) == []
    # A second Start finds the one running.
    again = json.loads((await jp_fetch("jupyter-deploy", "api", "daemon", "start", method="POST", body="{}")).body)
    assert again["address"] == started["address"]
