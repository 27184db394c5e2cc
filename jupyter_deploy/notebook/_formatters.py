"""IPython formatters for our result types, registered without importing the renderers.

``%load_ext jupyter_deploy`` registers them (``register_formatters``) by the types' names
(``for_type_by_name``), so neither ``render`` nor ``model.types`` is imported until a value of
ours is first displayed; ``render`` does the work then. ``render.register_formatters`` is this
one.
"""

from __future__ import annotations

import sys
from typing import Any

_TYPES_MODULE = "jupyter_deploy.model.types"
_OUR_TYPES = ("Concept", "Region", "Frame", "Audio", "Video")
_MIMES = ("text/html", "image/png")
#: Per shell (by id): what each (mime, type name or ``list``) had before, put back by unregister.
_saved: dict[int, dict[tuple[str, Any], Any]] = {}


def _rendered(obj: Any, mime: str) -> Any:
    from .render import render  # displaying, not a per-call path: an import lookup is nothing here

    return render(obj).data.get(mime)


def _formatter_for(mime: str) -> Any:
    def format_value(obj: Any) -> Any:
        return _rendered(obj, mime)
    format_value.__name__ = f"jupyter_deploy_{mime.replace('/', '_')}"
    return format_value


def _list_formatter_for(mime: str) -> Any:
    # Only a list made wholly of Concepts or Regions (what a model returns) is ours to
    # render; for any other list this answers None and IPython shows it as it always does.
    # No Concept can exist before model.types is imported, so a list is never a reason to import it.
    def format_list(obj: Any) -> Any:
        types = sys.modules.get(_TYPES_MODULE)
        if types is None or not obj:
            return None
        if all(isinstance(x, types.Concept) for x in obj) or all(isinstance(x, types.Region) for x in obj):
            return _rendered(obj, mime)
        return None
    format_list.__name__ = f"jupyter_deploy_list_{mime.replace('/', '_')}"
    return format_list


def register_formatters(ip: Any) -> None:
    """Let IPython show Concept, Region, Frame, Audio and Video (and lists of Concepts or
    Regions, as a model returns them) by ``render``; other values are shown as always."""
    if ip is None or id(ip) in _saved:
        return
    previous: dict[tuple[str, Any], Any] = {}
    for mime in _MIMES:
        formatter = ip.display_formatter.formatters[mime]
        for name in _OUR_TYPES:
            previous[(mime, name)] = formatter.for_type_by_name(_TYPES_MODULE, name, _formatter_for(mime))
        previous[(mime, list)] = formatter.for_type(list, _list_formatter_for(mime))
    _saved[id(ip)] = previous


def unregister_formatters(ip: Any) -> None:
    """Undo ``register_formatters`` (what was registered before comes back)."""
    if ip is None:
        return
    previous = _saved.pop(id(ip), None)
    if previous is None:
        return
    for (mime, typ), old in previous.items():
        formatter = ip.display_formatter.formatters[mime]
        if typ is list:
            formatter.pop(list, None)
            if old is not None:
                formatter.for_type(list, old)
        else:
            # By name: whether IPython still holds it deferred or has since moved it to the class.
            formatter.pop(f"{_TYPES_MODULE}.{typ}", None)
            if old is not None:
                formatter.for_type_by_name(_TYPES_MODULE, typ, old)
