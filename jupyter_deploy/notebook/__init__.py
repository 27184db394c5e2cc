"""Notebook layer: magics, widgets and inline rendering.

``%load_ext jupyter_deploy`` (or ``jupyter_deploy.notebook``) registers ``%%deploy``,
``%predict`` and ``%stream`` (``jupyter_deploy.notebook.magics``). Nothing heavy is
imported until the extension is loaded.
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ip: Any) -> None:
    from ._extension import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from ._extension import unload_ipython_extension as unload

    unload(ip)
