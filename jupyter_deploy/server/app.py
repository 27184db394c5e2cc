"""The jupyter_server extension: the sidebar's REST API and its state-change events."""

from __future__ import annotations

import asyncio

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode

from . import handlers
from ._views import PanelAPI
from ._watch import SCHEMA_PATH, StateWatcher


class DeployServerExtension(ExtensionApp):
    """Serves ``/jupyter-deploy/api/*`` for the JupyterLab sidebar.

    It talks to the daemon through the public client, as the local user unless
    configured otherwise, and starts one (in the background, as ``Client()`` does) only when
    the sidebar's Start button asks (``POST daemon/start``). Configure it like any
    Jupyter app, e.g. ``jupyter lab --DeployServerExtension.daemon_address=127.0.0.1:7070``.
    """

    name = "jupyter_deploy"

    daemon_address = Unicode("", config=True, help="HOST:PORT of the jupyter_deploy daemon "
                             "(default: JUPYTER_DEPLOY_ADDRESS, else the discovery file)")
    pat = Unicode("", config=True, help="Personal access token (default: JUPYTER_DEPLOY_PAT, "
                  "else the local user's token file)")
    watch_interval = Float(1.0, config=True, help="Seconds before watching the daemon's state "
                           "changes again when it does not answer")

    def initialize_settings(self) -> None:
        self.api = PanelAPI(address=self.daemon_address, pat=self.pat)
        self.serverapp.event_logger.register_event_schema(SCHEMA_PATH)
        self.watcher = StateWatcher(self.api, self.serverapp.event_logger, interval=self.watch_interval)
        self.settings.update(jupyter_deploy_api=self.api, jupyter_deploy_watcher=self.watcher)

    def initialize_handlers(self) -> None:
        # ExtensionApp prefixes the server's base_url itself.
        self.handlers.extend(handlers.handlers("/"))

    async def stop_extension(self) -> None:
        self.watcher.stop()
        await asyncio.to_thread(self.api.close)
