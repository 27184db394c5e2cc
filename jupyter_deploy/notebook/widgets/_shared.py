"""What the deployment card and the predict form share: a text summary, error lines, outputs."""

from __future__ import annotations

import html
from typing import Any

#: The color of an error line in a widget.
ERROR_COLOR = "#c62828"


class SummaryRepr:
    """A widget whose text/plain (what headless runs and static viewers keep) is its summary."""

    def summary(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.summary()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) or {}  # type: ignore[misc]
        data["text/plain"] = self.summary()
        return data


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """A mimebundle whose binary values are base64 text, as an Output widget's outputs need."""
    import base64

    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray)) else v
            for k, v in data.items()}


def colored(text: str, color: str = ERROR_COLOR) -> str:
    """``text`` as HTML in ``color`` (an error's red by default)."""
    return f"<span style='color:{color}'>{html.escape(text)}</span>"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
