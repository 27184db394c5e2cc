"""pytest-jupyter's server fixtures (jp_fetch, jp_ws_fetch), for this folder only.

Imported here rather than through a root ``pytest_plugins`` because its autouse
fixtures (a fresh event loop and ServerApp clean-up per test) should not touch the
rest of the suite.
"""

import pytest
from pytest_jupyter.jupyter_server import *


@pytest.fixture
def jp_server_config():
    # jupyter_server's default (allow_unauthenticated_access=True): a handler of ours that
    # forgot @tornado.web.authenticated would answer without a token, and the tests see it.
    return {"ServerApp": {"jpserver_extensions": {"jupyter_deploy": True}}}
