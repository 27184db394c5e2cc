"""StreamView: a stream shown in one display, updated in place, coalesced by time.

``StreamView`` shows a stream (tokens, frames or other values) in ONE display
updated in place at most ``max_fps`` times a second, whatever the stream's
rate, and leaves the complete result as a plain output (text, or the last
frame as a PNG) that a saved or headless notebook keeps::

    view = StreamView()
    for token in model.generate("Once upon a time"):
        view.add(token)
    view.close()                 # the exact full text, and the tokens/s
    view.text, view.rate, view.updates
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Self

import ipywidgets as w

from ...model.types import Frame
from ..render import (
    as_pil,
    is_loaded_type,
    is_pil,
    looks_like_image,
    render,
    sniff_image,
    to_jpeg,
    to_png,
)


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def _live_by_default(shell: Any) -> bool:
    """True where display updates replace in place (a kernel, a capture), not in a terminal."""
    if shell is None:
        return False
    from IPython.core.displaypub import DisplayPublisher

    return type(shell.display_pub) is not DisplayPublisher


def _in_kernel(shell: Any) -> bool:
    return shell is not None and getattr(shell, "kernel", None) is not None


def _kind_of(item: Any) -> str:
    if isinstance(item, str):
        return "text"
    if isinstance(item, Frame) or is_pil(item) or (
            is_loaded_type(item, "numpy", "ndarray") and looks_like_image(item)) or (
            isinstance(item, (bytes, bytearray)) and sniff_image(bytes(item[:8])) is not None):
        return "frames"
    return "values"


# ---------------------------------------------------------------- StreamView


class StreamView:
    """A live view of a stream, coalesced by time, finalised as a plain output.

    Args:
        kind: ``"text"`` (items are strings, shown joined), ``"frames"`` (images,
            ``Frame``s or image arrays: the latest is shown), ``"values"`` (any
            other item: the latest is shown, all of them at the end), or
            ``"auto"`` (decided by the first item).
        max_fps: the most display updates per second (Jupyter servers drop
            output past 1000 messages a second; 15 stays far under).
        keep_frames: keep every frame in ``items`` (False: only the latest).
        markdown: show text as Markdown (``text/plain`` keeps the exact text).
        live: update a display in place. Default: yes in a kernel; in a
            terminal or a script text goes to stdout as it comes and the
            final frame or value is shown once at the end.
        transport: for frames in a kernel, ``"widget"`` sends them as binary
            buffers through an ipywidgets Image, ``"display"`` as display
            updates; ``"auto"`` picks the widget in a kernel.

    ``updates`` counts the display messages sent (the first display, each
    update and the final one), ``count`` the items received, ``rate`` items per
    second since the view was made.
    """

    def __init__(self, kind: str = "auto", max_fps: float = 15, *, keep_frames: bool = True,
                 markdown: bool = False, live: bool | None = None, transport: str = "auto",
                 unit: str | None = None):
        if kind not in ("auto", "text", "frames", "values"):
            raise ValueError(f"kind must be auto, text, frames or values, not {kind!r}")
        if transport not in ("auto", "display", "widget"):
            raise ValueError(f"transport must be auto, display or widget, not {transport!r}")
        if not max_fps or max_fps <= 0:
            raise ValueError("max_fps must be positive")
        self.kind = kind
        self.max_fps = float(max_fps)
        self.keep_frames = keep_frames
        self.markdown = markdown
        self._shell = _shell()
        self.live = _live_by_default(self._shell) if live is None else bool(live)
        self._transport = transport
        self._unit = unit
        self._interval = 1.0 / self.max_fps
        self._items: list[Any] = []
        self._text = ""
        self._joined = 0  # how many of the text items _text holds
        self._written = 0  # characters of the text already written to stdout (not live)
        self._latest: Any = None
        self._count = 0
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._last = float("-inf")
        self._handle: Any = None
        self._image_widget: Any = None
        self._dirty = False
        self.updates = 0
        self.closed = False

    # ------------------------------------------------------------ state

    @property
    def items(self) -> list[Any]:
        """Everything received (for frames with ``keep_frames=False``, only the latest)."""
        return self._items

    @property
    def text(self) -> str:
        """The text received so far, exactly (text streams)."""
        if self._joined < len(self._items) and self.kind == "text":
            self._text += "".join(self._items[self._joined:])
            self._joined = len(self._items)
        return self._text

    @property
    def latest(self) -> Any:
        return self._latest

    @property
    def count(self) -> int:
        return self._count

    @property
    def elapsed(self) -> float:
        return (self._t_end if self._t_end is not None else time.monotonic()) - self._t0

    @property
    def rate(self) -> float:
        """Items (tokens, frames) per second since the view was made."""
        elapsed = self.elapsed
        return self._count / elapsed if elapsed > 0 else 0.0

    @property
    def updates_per_second(self) -> float:
        elapsed = self.elapsed
        return self.updates / elapsed if elapsed > 0 else 0.0

    @property
    def unit(self) -> str:
        if self._unit:
            return self._unit
        return {"text": "tokens", "frames": "frames"}.get(self.kind, "items")

    def caption(self) -> str:
        """``"1234 tokens · 456.7 tokens/s"`` (with the time once closed)."""
        text = f"{self._count} {self.unit} · {self.rate:.1f} {self.unit}/s"
        return text + (f" · {self.elapsed:.2f} s" if self.closed else " · streaming…")

    def __repr__(self) -> str:
        return f"<StreamView {self.kind}: {self.caption()}, {self.updates} updates>"

    # ------------------------------------------------------------ feeding

    def add(self, item: Any) -> None:
        """One more item; the view updates if 1/max_fps s passed since the last update."""
        if self.closed:
            raise RuntimeError("this StreamView is closed")
        if self.kind == "auto":
            self.kind = _kind_of(item)
        self._count += 1
        if self.kind == "text":
            self._items.append(item if isinstance(item, str) else str(item))
        elif self.kind == "frames" and not self.keep_frames:
            self._items[:] = [item]
        else:
            self._items.append(item)
        self._latest = item
        self._dirty = True
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._push(now, final=False)

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.add(item)

    def flush(self) -> None:
        """Show what was received now (ignores the rate limit: call it rarely)."""
        if self._dirty and not self.closed:
            self._push(time.monotonic(), final=False)

    def consume(self, iterable: Iterable[Any]) -> StreamView:
        """Add every item of ``iterable``, then close (also on an interrupt: what came is kept)."""
        try:
            items = iter(iterable)
            for item in items:
                self.add(item)  # the first item settles the kind
                break
            if self.kind == "text":
                self._consume_text(items)
            else:
                for item in items:
                    self.add(item)
        finally:
            self.close()
        return self

    def _consume_text(self, items: Iterator[Any]) -> None:
        # ``add`` per token costs about as much as reading the token off the wire (W6):
        # this loop keeps only what each token needs, and the clock check.
        append, clock, interval = self._items.append, time.monotonic, self._interval
        count, item = self._count, self._latest
        try:
            for item in items:
                append(item if type(item) is str else str(item))
                count += 1
                now = clock()
                if now - self._last >= interval:
                    self._count, self._latest = count, item
                    self._push(now, final=False)
        finally:
            if count != self._count:
                self._count, self._latest, self._dirty = count, item, True

    def close(self) -> None:
        """Send the final, complete output (exact text, or the last frame as PNG) and the rate."""
        if self.closed:
            return
        self.closed = True
        self._t_end = time.monotonic()
        if self._count == 0:
            return
        self._push(self._t_end, final=True)
        if self._image_widget is not None:
            self._image_widget.close()
            self._image_widget = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ output

    def _push(self, now: float, final: bool) -> None:
        self._last = now
        self._dirty = False
        if not self.live:
            self._push_plain(final)
            return
        if self.kind == "frames" and self._use_widget() and not final:
            self._push_widget_frame()
            return
        bundle = self._bundle(final)
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self.updates += 1

    def _use_widget(self) -> bool:
        return self._transport == "widget" or (
            self._transport == "auto" and _in_kernel(self._shell))

    def _push_widget_frame(self) -> None:
        data = to_jpeg(as_pil(self._latest))
        if self._image_widget is None:
            from IPython.display import display

            self._image_widget = w.Image(value=data, format="jpeg")
            self._handle = display(self._image_widget, display_id=True)
        else:
            self._image_widget.value = data  # one comm message, the bytes as a binary buffer
        self.updates += 1

    def _bundle(self, final: bool) -> dict[str, Any]:
        caption = self.caption()
        if self.kind == "text":
            text = self.text
            if self.markdown:
                return {"text/plain": text,
                        "text/markdown": f"{text}\n\n<sub>{html.escape(caption)}</sub>"}
            return {"text/plain": text,
                    "text/html": ("<pre style='white-space:pre-wrap;margin:0'>"
                                  f"{html.escape(text)}</pre>"
                                  "<div style='font-size:smaller;opacity:0.7'>"
                                  f"{html.escape(caption)}</div>")}
        if self.kind == "frames":
            image = as_pil(self._latest)
            plain = f"<frame {self._count}, {image.width}x{image.height}: {caption}>"
            if final:
                return {"image/png": to_png(image), "text/plain": plain}
            return {"image/jpeg": to_jpeg(image), "text/plain": plain}
        data = dict(render(self._items if final else self._latest).data)
        data["text/plain"] = f"[{caption}]\n{data['text/plain']}"
        return data

    def _push_plain(self, final: bool) -> None:
        """No live display: text goes to stdout as it comes; frames and values once, at the end."""
        if self.kind == "text":
            text = self.text
            if len(text) > self._written or final:
                sys.stdout.write(text[self._written:] + ("\n" if final else ""))
                sys.stdout.flush()
                self._written = len(text)
                self.updates += 1
            return
        if final:
            bundle = self._bundle(True)
            shell = self._shell
            if shell is not None:
                from IPython.display import display

                display(bundle, raw=True)
            else:
                print(bundle["text/plain"])
            self.updates += 1
