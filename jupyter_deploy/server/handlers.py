"""REST handlers under ``/jupyter-deploy/api/``: thin, authenticated, JSON in and out.

Each verb runs one :class:`~jupyter_deploy.server._views.PanelAPI` call in a thread
(the client blocks on gRPC) and maps our errors to HTTP statuses with a JSON message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..errors import ControlPlaneError, DeployError
from ._views import DaemonUnavailable, PanelAPI
from ._watch import StateWatcher

#: gRPC status of a control-plane error -> HTTP status.
HTTP_STATUS = {"NOT_FOUND": 404, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 403, "INVALID_ARGUMENT": 400,
               "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409, "UNAVAILABLE": 503,
               "DEADLINE_EXCEEDED": 504}

_ID = r"[A-Za-z0-9_.-]+"


class _Handler(APIHandler):
    @property
    def api(self) -> PanelAPI:
        return self.settings["jupyter_deploy_api"]

    @property
    def watcher(self) -> StateWatcher:
        return self.settings["jupyter_deploy_watcher"]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.watcher.touch()
        try:
            return await asyncio.to_thread(fn, *args)
        except DaemonUnavailable as e:
            raise tornado.web.HTTPError(503, str(e)) from None
        except ControlPlaneError as e:
            raise tornado.web.HTTPError(HTTP_STATUS.get(e.code, 500), str(e)) from None
        except DeployError as e:
            raise tornado.web.HTTPError(500, str(e)) from None

    def write_json(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))


class ComputeClustersHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json(await self.run(self.api.clusters))


class NodepoolsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json(await self.run(self.api.nodepools))


class DeploymentsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json(await self.run(self.api.deployments))


class DeploymentHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, deployment_id: str) -> None:
        self.write_json(await self.run(self.api.deployment, deployment_id))

    @tornado.web.authenticated
    async def delete(self, deployment_id: str) -> None:
        await self.run(self.api.delete_deployment, deployment_id)
        self.watcher.emit(deployment_id, "DELETED", "delete")
        self.set_status(204)
        self.finish()


class DeploymentActionHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, deployment_id: str, action: str) -> None:
        view = await self.run(self.api.act, deployment_id, action)
        self.watcher.emit(deployment_id, view["state"], action)
        self.write_json(view)


class ModelsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write_json(await self.run(self.api.models))


class ModelVersionHandler(_Handler):
    @tornado.web.authenticated
    async def delete(self, user_id: str, app_id: str, model_id: str, version_id: str) -> None:
        await self.run(self.api.delete_version, user_id, app_id, model_id, version_id)
        self.set_status(204)
        self.finish()


class DaemonStartHandler(_Handler):
    @tornado.web.authenticated
    async def post(self) -> None:
        """The sidebar's Start button: the background daemon, as the first ``Client()`` starts it."""
        self.write_json(await self.run(self.api.start_daemon))


def handlers(base_url: str) -> list[tuple[str, type[_Handler]]]:
    """The URL patterns of our API under ``base_url``."""
    def url(*parts: str) -> str:
        return url_path_join(base_url, "jupyter-deploy", "api", *parts)

    return [
        (url("daemon", "start"), DaemonStartHandler),
        (url("compute-clusters"), ComputeClustersHandler),
        (url("nodepools"), NodepoolsHandler),
        (url("deployments"), DeploymentsHandler),
        (url("deployments", f"({_ID})"), DeploymentHandler),
        (url("deployments", f"({_ID})", "(start|stop)"), DeploymentActionHandler),
        (url("models"), ModelsHandler),
        (url("models", f"({_ID})", f"({_ID})", f"({_ID})", "versions", f"({_ID})"), ModelVersionHandler),
    ]
