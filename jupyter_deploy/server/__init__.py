"""The Jupyter server extension behind the JupyterLab sidebar.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/jupyter_deploy.json``;
``jupyter server extension list`` shows it. Its REST API lives under
``/jupyter-deploy/api/`` (see :mod:`jupyter_deploy.server.handlers`); state changes
reach the browser as events with the schema ``SCHEMA_ID``.
"""

from ._watch import SCHEMA_ID
from .app import DeployServerExtension

__all__ = ["SCHEMA_ID", "DeployServerExtension"]
