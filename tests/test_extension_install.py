"""The installed package brings its JupyterLab and Jupyter server extensions, enabled.

These read the installed copy (what `pip install .` put in the environment), as a user's
`jupyter lab` does, so they check the wheel's data files rather than the source tree.
"""

from __future__ import annotations

import re
import subprocess
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120)
    return ANSI.sub("", out.stdout + out.stderr)


def test_labextension_is_prebuilt_and_enabled():
    listing = _jupyter("labextension", "list")
    assert re.search(r"jupyter-deploy v\S+ enabled OK \(python, jupyter_deploy\)", listing), listing


def test_server_extension_is_enabled_on_install():
    listing = _jupyter("server", "extension", "list")
    assert re.search(r"jupyter_deploy enabled", listing), listing
    assert re.search(r"jupyter_deploy \S+ OK", listing), listing
