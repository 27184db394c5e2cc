"""Where jupyter_deploy keeps its state on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state folder: ``$JUPYTER_DEPLOY_HOME``, else ``~/.jupyter_deploy``."""
    return Path(os.environ.get("JUPYTER_DEPLOY_HOME") or Path.home() / ".jupyter_deploy")
