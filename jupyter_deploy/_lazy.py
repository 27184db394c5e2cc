"""A module imported on first use, for module globals that only some call paths need.

``import jupyter_deploy`` must stay cheap (no protobuf, gRPC, pydantic), yet modules such as
``model.signature`` use a generated protobuf module in a few functions. ``LazyModule`` stands in
for it under its global name; the first attribute read imports the real module and rebinds that
global to it, so later calls pay nothing (not even the dict lookup an import inside the function
would cost each call).

Example::

    if TYPE_CHECKING:
        from ..proto import runner_pb2 as pb
    else:
        pb = LazyModule("jupyter_deploy.proto.runner_pb2", globals(), "pb")
"""

from __future__ import annotations

from typing import Any


class LazyModule:
    """Stands in for module ``name`` under ``globals_[alias]`` until an attribute is first read."""

    __slots__ = ("_name", "_globals", "_alias")

    def __init__(self, name: str, globals_: dict[str, Any], alias: str):
        self._name = name
        self._globals = globals_
        self._alias = alias

    def __getattr__(self, attr: str) -> Any:
        import importlib

        module = importlib.import_module(self._name)
        # Rebinding is idempotent, so two threads racing here both end with the real module.
        self._globals[self._alias] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
