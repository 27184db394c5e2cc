"""The server extension's REST API and events, against a real daemon and runner."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
import tornado.httpclient
from daemon_helpers import deployed_echo

from jupyter_deploy.server import SCHEMA_ID

pytestmark = pytest.mark.timeout(240)

@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """A daemon with one model (two versions) deployed as ``echo`` on local/local."""
    with deployed_echo(tmp_path_factory, "server_home", versions=2) as (client, _):
        yield client


async def get(jp_fetch, *path: str):
    response = await jp_fetch("jupyter-deploy", "api", *path)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def failure(jp_fetch, *path: str, method: str = "GET", body: str | None = None):
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_fetch("jupyter-deploy", "api", *path, method=method, body=body,
                       allow_nonstandard_methods=True)
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_lists_show_the_daemon_state(daemon, jp_fetch):
    clusters = await get(jp_fetch, "compute-clusters")
    assert [c["id"] for c in clusters] == ["local"]
    assert clusters[0]["cloud_provider"] == "local"

    nodepools = {(n["compute_cluster_id"], n["id"]): n for n in await get(jp_fetch, "nodepools")}
    assert nodepools[("local", "local")]["instance"]["cpus"] > 0

    (dep,) = await get(jp_fetch, "deployments")
    assert (dep["id"], dep["nodepool_id"], dep["compute_cluster_id"]) == ("echo", "local", "local")
    assert dep["state"] == "RUNNING"
    assert dep["model_url"] == "local/default/models/echo" and dep["version_number"] == 2
    assert [r["state"] for r in dep["replicas"]] == ["READY"]
    assert dep["endpoint"].startswith("127.0.0.1:")

    (model,) = await get(jp_fetch, "models")
    assert model["url"] == "local/default/models/echo"
    assert [v["number"] for v in model["versions"]] == [2, 1]
    assert model["versions"][0]["methods"] == ["predict"]


async def test_deployment_details_carry_the_log_tail_and_metrics(daemon, jp_fetch):
    model = daemon.model("echo")
    for i in range(3):
        assert model.predict(f"m{i}") == f"echo: m{i}"
    dep = await get(jp_fetch, "deployments", "echo")
    assert dep["id"] == "echo" and isinstance(dep["logs"], list)
    assert any("listening" in line for line in dep["logs"]), dep["logs"]
    # Runners report their calls in the background: the count catches up within a second or so.
    while dep["metrics"]["requests"] < 3:
        await asyncio.sleep(0.2)
        dep = await get(jp_fetch, "deployments", "echo")
    assert dep["metrics"]["errors"] == 0 and dep["metrics"]["p50_ms"] > 0


async def test_errors_are_json_with_a_status(daemon, jp_fetch):
    code, message = await failure(jp_fetch, "deployments", "nope")
    assert code == 404 and "nope" in message

    # The version serving "echo" cannot be deleted from under it.
    (model,) = await get(jp_fetch, "models")
    current = model["versions"][0]["id"]
    code, message = await failure(jp_fetch, "models", "local", "default", "echo", "versions", current,
                                  method="DELETE")
    assert code == 409 and "echo" in message
    assert len((await get(jp_fetch, "models"))[0]["versions"]) == 2


async def test_delete_an_unused_version(daemon, jp_fetch):
    (model,) = await get(jp_fetch, "models")
    old = model["versions"][-1]["id"]
    response = await jp_fetch("jupyter-deploy", "api", "models", "local", "default", "echo", "versions", old,
                              method="DELETE")
    assert response.code == 204
    (model,) = await get(jp_fetch, "models")
    assert [v["number"] for v in model["versions"]] == [2]


async def test_stop_and_start_push_events(daemon, jp_fetch, jp_ws_fetch):
    ws = await jp_ws_fetch("api", "events", "subscribe")
    try:
        response = await jp_fetch("jupyter-deploy", "api", "deployments", "echo", "stop", method="POST", body="{}")
        assert json.loads(response.body)["id"] == "echo"
        # The action's own event, and the changes the daemon pushes (they may come first): the
        # watcher sees the replica go away without anyone asking.
        seen = []
        while not ({"stop"} <= {e["action"] for e in seen} and "STOPPED" in {e["state"] for e in seen}):
            seen.append(await _next_event(ws))
        assert {e["deployment_id"] for e in seen} == {"echo"}
        assert {e["action"] for e in seen} <= {"stop", "changed"}
        assert (await get(jp_fetch, "deployments", "echo"))["state"] == "STOPPED"
        event = seen[-1]

        await jp_fetch("jupyter-deploy", "api", "deployments", "echo", "start", method="POST", body="{}")
        while event["state"] != "RUNNING":
            event = await _next_event(ws)
        assert event["action"] == "changed"
    finally:
        ws.close()
    daemon.deployment("echo").wait_until_ready(60)


async def test_a_change_made_elsewhere_reaches_the_event_bus(daemon, jp_fetch, jp_ws_fetch, jp_serverapp):
    ws = await jp_ws_fetch("api", "events", "subscribe")
    try:
        await get(jp_fetch, "deployments")  # a panel is looking: the watcher runs
        watcher = jp_serverapp.web_app.settings["jupyter_deploy_watcher"]
        await asyncio.wait_for(watcher.synced.wait(), 30)  # ... and has the current states
        await asyncio.to_thread(daemon.deployment("echo").stop)
        event = await _next_event(ws)
        while event["state"] != "STOPPED":
            event = await _next_event(ws)
        assert (event["deployment_id"], event["action"]) == ("echo", "changed")
    finally:
        ws.close()
        await asyncio.to_thread(lambda: daemon.deployment("echo").start().wait_until_ready(60))


async def test_delete_a_deployment(daemon, jp_fetch):
    # One deployment per model per nodepool: this one goes on a second nodepool.
    nodepool = daemon.compute_cluster("local").create_nodepool("spare")
    nodepool.create_deployment("doomed", worker={"model": {"id": "echo"}})
    response = await jp_fetch("jupyter-deploy", "api", "deployments", "doomed", method="DELETE")
    assert response.code == 204
    assert "doomed" not in [d["id"] for d in await get(jp_fetch, "deployments")]


async def test_handlers_refuse_requests_without_the_token(daemon, jp_fetch, http_server_client, jp_base_url):
    for path in ("compute-clusters", "nodepools", "deployments", "deployments/echo", "models"):
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await http_server_client.fetch(f"{jp_base_url}jupyter-deploy/api/{path}")
        assert info.value.code == 403, path
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await http_server_client.fetch(f"{jp_base_url}jupyter-deploy/api/deployments/echo/stop",
                                       method="POST", body="{}")
    assert info.value.code == 403
    assert (await get(jp_fetch, "deployments", "echo"))["state"] == "RUNNING"


def test_every_handler_of_ours_requires_authentication(jp_configurable_serverapp):
    # As the extension template's CI: jupyter_server warns about each handler without
    # @tornado.web.authenticated (or an explicit opt-out) when it loads an extension.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = jp_configurable_serverapp(config={"ServerApp": {
            "jpserver_extensions": {"jupyter_deploy": True}, "allow_unauthenticated_access": False}})
    assert "jupyter_deploy" in app.extension_manager.extension_apps
    ours = [str(w.message) for w in caught if "jupyter-deploy" in str(w.message)]
    assert ours == []


@pytest.mark.parametrize("jp_server_config", [{"ServerApp": {"jpserver_extensions": {"jupyter_deploy": True}},
                                               "DeployServerExtension": {"daemon_address": "127.0.0.1:9"}}])
async def test_no_daemon_is_a_503_that_says_what_to_do(jp_fetch, jp_server_config):
    code, message = await failure(jp_fetch, "deployments")
    assert code == 503 and message == "No jupyter_deploy daemon is running at 127.0.0.1:9."
    assert "`" not in message  # plain text: the panel adds its Start button


async def _next_event(ws, timeout: float = 30.0) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.read_message(), timeout))
        if message["schema_id"] == SCHEMA_ID:
            return message
