"""Notebook widgets: a coalescing stream view, a deployment card and a predict form.

``StreamView`` shows a stream (tokens, frames or other values) in ONE display
updated in place at most ``max_fps`` times a second, whatever the stream's
rate, and leaves the complete result as a plain output (text, or the last
frame as a PNG) that a saved or headless notebook keeps::

    view = StreamView()
    for token in model.generate("Once upon a time"):
        view.add(token)
    view.close()                 # the exact full text, and the tokens/s
    view.text, view.rate, view.updates

``DeploymentCard(deployment)`` shows a deployment's state, version, replicas,
nodepool, endpoint and log tail, with Start / Stop / Delete buttons.
``predict_form(model)`` builds a form from a method's signature.

Neither talks to the daemon except through the Deployment and Model objects.
"""

from __future__ import annotations

import ast
import html
import io
import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Self

import ipywidgets as w

from .render import looks_like_image, render, to_jpeg, to_png

__all__ = ["DeploymentCard", "PredictForm", "StreamView", "deployment_card", "predict_form"]


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def _live_by_default(shell: Any) -> bool:
    """True where display updates replace in place (a kernel, a capture); False in a terminal or a script."""
    if shell is None:
        return False
    from IPython.core.displaypub import DisplayPublisher

    return type(shell.display_pub) is not DisplayPublisher


def _in_kernel(shell: Any) -> bool:
    return shell is not None and getattr(shell, "kernel", None) is not None


def _is_pil(value: Any) -> bool:
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(value, mod.Image)


def _is_array(value: Any) -> bool:
    mod = sys.modules.get("numpy")
    return mod is not None and isinstance(value, mod.ndarray)


def _sniffs_as_image(data: Any) -> bool:
    return isinstance(data, (bytes, bytearray)) and (
        bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" or bytes(data[:3]) == b"\xff\xd8\xff")


def _kind_of(item: Any) -> str:
    from ..model.types import Frame

    if isinstance(item, str):
        return "text"
    if isinstance(item, Frame) or _is_pil(item) or (_is_array(item) and looks_like_image(item)) \
            or _sniffs_as_image(item):
        return "frames"
    return "values"


def _frame_image(item: Any) -> Any:
    from ..model.types import Frame

    if isinstance(item, Frame):
        item = item.image
    if _is_pil(item):
        return item
    if isinstance(item, (bytes, bytearray)):
        from PIL import Image

        return Image.open(io.BytesIO(bytes(item)))
    from .render import _as_pil

    return _as_pil(item)


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
        return self._transport == "widget" or (self._transport == "auto" and _in_kernel(self._shell))

    def _push_widget_frame(self) -> None:
        data = to_jpeg(_frame_image(self._latest))
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
                return {"text/plain": text, "text/markdown": f"{text}\n\n<sub>{html.escape(caption)}</sub>"}
            return {"text/plain": text,
                    "text/html": (f"<pre style='white-space:pre-wrap;margin:0'>{html.escape(text)}</pre>"
                                  f"<div style='font-size:smaller;opacity:0.7'>{html.escape(caption)}</div>")}
        if self.kind == "frames":
            image = _frame_image(self._latest)
            plain = f"<frame {self._count}, {image.width}x{image.height}: {caption}>"
            if final:
                return {"image/png": to_png(image), "text/plain": plain}
            return {"image/jpeg": to_jpeg(image), "text/plain": plain}
        data = dict(render(self._items if final else self._latest).data)
        data["text/plain"] = f"[{caption}]\n{data['text/plain']}"
        return data

    def _push_plain(self, final: bool) -> None:
        """No live display: text goes to stdout as it comes; frames and values are shown once, at the end."""
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


# ---------------------------------------------------------------- helpers for widgets


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """A mimebundle whose binary values are base64 text, as an Output widget's outputs need."""
    import base64

    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray)) else v
            for k, v in data.items()}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


_STATE_COLORS = {"RUNNING": "#2e7d32", "IDLE": "#1565c0", "FAILED": "#c62828", "STOPPED": "#616161",
                 "DELETED": "#616161"}


def _badge(state: str) -> str:
    color = _STATE_COLORS.get(state, "#ef6c00")
    return (f"<span style='background:{color};color:white;border-radius:4px;padding:1px 6px;"
            f"font-size:smaller;font-weight:bold'>{html.escape(state)}</span>")


# ---------------------------------------------------------------- DeploymentCard


class _ReprWidgetMixin:
    """A widget whose text/plain (what headless runs and static viewers keep) is a useful summary."""

    def summary(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.summary()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) or {}  # type: ignore[misc]
        data["text/plain"] = self.summary()
        return data


class DeploymentCard(_ReprWidgetMixin, w.VBox):
    """A deployment's state, version, replicas, nodepool, endpoint and log tail, with actions.

    Buttons call the Deployment's ``start()``, ``stop()`` and ``delete()``
    (Delete asks for a second click), Refresh (and ``refresh()``) reads its
    status and log tail again; "Live" refreshes every ``interval`` seconds
    from a background thread (widget updates are not tied to a cell).
    """

    def __init__(self, deployment: Any, *, log_lines: int = 50, interval: float = 2.0,
                 live: bool = False, confirm_seconds: float = 10.0):
        self.deployment = deployment
        self.log_lines = log_lines
        self.interval = interval
        self.confirm_seconds = confirm_seconds
        self.deployment_status: dict = {}
        self.metrics: dict = {}  # Deployment.metrics(): requests, errors, latency, in flight, queue
        self.log_tail: list[str] = []
        self.deleted = False
        self._delete_armed_at: float | None = None
        self._stop_live = threading.Event()
        self._live_thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.title_html = w.HTML()
        self.details_html = w.HTML()
        self.metrics_html = w.HTML()
        self.endpoint_html = w.HTML()
        self.message_html = w.HTML()
        self.start_button = w.Button(description="Start", icon="play", tooltip="start the deployment")
        self.stop_button = w.Button(description="Stop", icon="stop", tooltip="stop its replicas")
        self.delete_button = w.Button(description="Delete", icon="trash", button_style="danger",
                                      tooltip="delete the deployment (click twice)")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.live_toggle = w.ToggleButton(value=False, description="Live", icon="eye",
                                          tooltip=f"refresh every {interval:g} s")
        self.log_area = w.Textarea(value="", disabled=True, placeholder="(no log lines yet)",
                                   layout=w.Layout(width="100%", height="12em"))
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.delete_button.on_click(lambda _b: self._delete_clicked())
        self.refresh_button.on_click(lambda _b: self._refresh_clicked())
        self.live_toggle.observe(self._live_changed, names="value")
        buttons = w.HBox([self.start_button, self.stop_button, self.delete_button,
                          self.refresh_button, self.live_toggle])
        super().__init__([self.title_html, self.details_html, self.metrics_html, self.endpoint_html, buttons,
                          self.message_html, self.log_area],
                         layout=w.Layout(border="1px solid #ccc", padding="6px"))
        self.refresh()
        if live:
            self.live_toggle.value = True

    # ---------------------------------------------------- reading

    @property
    def state(self) -> str:
        if self.deleted:
            return "DELETED"
        return str(self.deployment_status.get("state") or "UNKNOWN")

    def _where(self) -> str:
        cluster = nodepool = ""
        try:
            resource = getattr(self.deployment, "resource", None)
            cluster = getattr(resource, "compute_cluster_id", "") or ""
            nodepool = getattr(resource, "nodepool_id", "") or ""
        except Exception:  # noqa: BLE001, S110 - the card shows what it can
            pass
        cluster = cluster or getattr(self.deployment, "compute_cluster_id", "") or ""
        nodepool = nodepool or getattr(self.deployment, "nodepool_id", "") or \
            self.deployment_status.get("nodepool", "")
        return f"{cluster}/{nodepool}" if cluster and nodepool else (nodepool or cluster or "?")

    def _replicas(self) -> list[dict]:
        return [r for r in self.deployment_status.get("replicas") or [] if isinstance(r, dict)]

    def summary(self) -> str:
        s = self.deployment_status
        replicas = self._replicas()
        ready = sum(1 for r in replicas if r.get("state") == "READY")
        version = s.get("version_number")
        text = (f"Deployment {getattr(self.deployment, 'id', '?')}: {self.state} · "
                f"version {version if version is not None else '?'} · "
                f"replicas {ready}/{len(replicas)} ready · nodepool {self._where()}")
        if s.get("model"):
            text += f" · model {s['model']}"
        if s.get("reason"):
            text += f" · {s['reason']}"
        scaling = _scaling_text(s)
        if scaling:
            text += f" · {scaling}"
        if self.metrics:
            text += f" · {_metrics_text(self.metrics)}"
        return text

    def refresh(self) -> DeploymentCard:
        """Read the status and the log tail again (errors show on the card, not raised)."""
        with self._lock:
            message = ""
            if not self.deleted:
                try:
                    self.deployment_status = dict(self.deployment.status or {})
                except Exception as e:  # noqa: BLE001 - a card must not raise from a click
                    message = f"could not read the status: {_one_line(e)}"
                else:
                    try:
                        self.log_tail = list(self.deployment.logs(self.log_lines))
                    except Exception as e:  # noqa: BLE001
                        message = f"could not read the logs: {_one_line(e)}"
                    read_metrics = getattr(self.deployment, "metrics", None)
                    if callable(read_metrics):
                        try:
                            self.metrics = dict(read_metrics() or {})
                        except Exception as e:  # noqa: BLE001
                            message = message or f"could not read the metrics: {_one_line(e)}"
            self._render(message)
        return self

    def _render(self, message: str = "") -> None:
        s = self.deployment_status
        replicas = self._replicas()
        with self.hold_sync():
            self.title_html.value = (f"<b>{html.escape(str(getattr(self.deployment, 'id', '?')))}</b> "
                                     f"{_badge(self.state)}")
            ready = sum(1 for r in replicas if r.get("state") == "READY")
            version = s.get("version_number")
            details = [f"version <b>{html.escape(str(version if version is not None else '?'))}</b>",
                       f"replicas <b>{ready}/{len(replicas)}</b> ready",
                       f"nodepool <code>{html.escape(self._where())}</code>"]
            if _scaling_text(s):
                details.append(html.escape(_scaling_text(s)))
            if s.get("model"):
                details.append(f"model <code>{html.escape(str(s['model']))}</code>")
            reason = f"<br/><i>{html.escape(str(s['reason']))}</i>" if s.get("reason") else ""
            self.details_html.value = " · ".join(details) + reason
            self.metrics_html.value = html.escape(_metrics_text(self.metrics)) if self.metrics else ""
            addresses = [str(r["address"]) for r in replicas if r.get("address")]
            self.endpoint_html.value = ("endpoint " + ", ".join(
                f"<code>{html.escape(a)}</code>" for a in addresses)) if addresses else "endpoint: none"
            self.log_area.value = "\n".join(self.log_tail)
            if message:
                self.message_html.value = f"<span style='color:#c62828'>{html.escape(message)}</span>"
            disabled = self.deleted
            self.start_button.disabled = disabled
            self.stop_button.disabled = disabled
            self.delete_button.disabled = disabled

    def _say(self, text: str, error: bool = False) -> None:
        color = "#c62828" if error else "inherit"
        self.message_html.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    # ---------------------------------------------------- actions

    def _act(self, name: str) -> bool:
        self._disarm_delete()
        try:
            getattr(self.deployment, name)()
        except Exception as e:  # noqa: BLE001 - shown on the card
            self._say(f"{name} failed: {_one_line(e)}", error=True)
            return False
        self._say(f"{name}: done")
        return True

    def start(self) -> DeploymentCard:
        if self._act("start"):
            self.refresh()
        return self

    def stop(self) -> DeploymentCard:
        if self._act("stop"):
            self.refresh()
        return self

    def delete(self) -> DeploymentCard:
        """Delete the deployment now (the button asks for a second click first)."""
        if self._act("delete"):
            self.deleted = True
            self.live_toggle.value = False
            self._render()
        return self

    def _refresh_clicked(self) -> None:
        self._disarm_delete()
        self.refresh()

    def _delete_clicked(self) -> None:
        now = time.monotonic()
        if self._delete_armed_at is not None and now - self._delete_armed_at <= self.confirm_seconds:
            self.delete()
            return
        self._delete_armed_at = now
        self.delete_button.description = "Confirm delete"
        self._say(f"click Delete again within {self.confirm_seconds:g} s to delete "
                  f"{getattr(self.deployment, 'id', 'the deployment')}")

    def _disarm_delete(self) -> None:
        self._delete_armed_at = None
        self.delete_button.description = "Delete"

    @property
    def delete_armed(self) -> bool:
        return self._delete_armed_at is not None

    # ---------------------------------------------------- live tail

    def _live_changed(self, change: dict) -> None:
        if change["new"]:
            self.start_live()
        else:
            self.stop_live()

    def start_live(self, interval: float | None = None) -> None:
        """Refresh every ``interval`` seconds from a background thread until ``stop_live()``."""
        if interval is not None:
            self.interval = interval
        if self._live_thread is not None and self._live_thread.is_alive():
            return
        self._stop_live.clear()

        def loop() -> None:
            while not self._stop_live.wait(self.interval):
                if self.deleted:
                    break
                self.refresh()

        self._live_thread = threading.Thread(target=loop, name="jupyter_deploy card", daemon=True)
        self._live_thread.start()
        if not self.live_toggle.value:
            self.live_toggle.value = True

    def stop_live(self) -> None:
        self._stop_live.set()
        thread, self._live_thread = self._live_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, self.interval))
        if self.live_toggle.value:
            self.live_toggle.value = False

    def close(self) -> None:
        self.stop_live()
        super().close()



def _scaling_text(status: dict) -> str:
    """The autoscaler's part of a status: wanted replicas, and the latest cold start from IDLE."""
    scale = status.get("autoscale") or {}
    parts = []
    if scale.get("wanted") is not None and status.get("state") not in ("STOPPED", "STOPPING", "FAILED"):
        parts.append(f"autoscaler wants {scale['wanted']}")
    if scale.get("last_cold_start_seconds") is not None:
        parts.append(f"last cold start from IDLE {scale['last_cold_start_seconds']:.2f} s")
    return ", ".join(parts)


def _metrics_text(m: dict) -> str:
    """``Deployment.metrics()`` on one line: requests, errors, latency percentiles, in flight, queue."""
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.3g} ms"

    errors = m.get("errors", 0)
    return (f"{m.get('requests', 0)} requests ({m.get('requests_last_minute', 0)} in the last minute), "
            f"{errors} error{'s' if errors != 1 else ''} · p50 {ms(m.get('p50_ms'))}, p99 {ms(m.get('p99_ms'))} · "
            f"{m.get('in_flight', 0)} in flight, queue {m.get('queue_depth', 0)}")


# ---------------------------------------------------------------- PredictForm

_FILE_KINDS = {"image": "image/*", "bytes": "", "audio": "audio/*", "video": "video/*",
               "frame": "image/*", "ndarray": "image/*,.npy"}


class PredictForm(_ReprWidgetMixin, w.VBox):
    """A form built from a model method's signature: fill it, press Run, see the rendered result.

    ``values()`` gives the arguments the fields hold, ``run()`` calls the
    method with them (what the Run button does), shows ``render(result)``
    in ``output`` and returns the result. Extra keyword arguments (such as
    ``deployment_id=``) go with every call.
    """

    def __init__(self, model: Any, method: str = "predict", **call_kwargs: Any):
        specs = getattr(model, "specs", None) or {}
        if method not in specs:
            known = ", ".join(specs) or "none"
            raise ValueError(f"the model has no method {method!r} (methods: {known})")
        self.model = model
        self.method = method
        self.spec = specs[method]
        if getattr(self.spec, "shape", "unary") == "bidi":
            raise ValueError(f"{method} takes a stream of inputs, which a form cannot fill: "
                             f"use %stream with --input")
        self.call_kwargs = call_kwargs
        self.result: Any = None
        self.rendered: Any = None
        self.error: BaseException | None = None
        self.fields: dict[str, Any] = {}
        self._params = {p.name: p for p in self.spec.params}
        for p in self.spec.params:
            self.fields[p.name] = self._field_for(p)
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.run_button.on_click(lambda _b: self._run_clicked())
        self.status_html = w.HTML()
        self.output = w.Output()
        name = getattr(model, "id", type(model).__name__)
        header = w.HTML(f"<b>{html.escape(str(name))}.{html.escape(method)}</b> "
                        f"<code>{html.escape(self._signature())}</code>")
        super().__init__([header, *self.fields.values(), w.HBox([self.run_button, self.status_html]),
                          self.output])

    def _signature(self) -> str:
        return getattr(self.spec, "signature_text", "") or f"({', '.join(self._params)})"

    def summary(self) -> str:
        name = getattr(self.model, "id", type(self.model).__name__)
        return f"PredictForm {name}.{self.method}{self._signature()}"

    # ---------------------------------------------------- fields

    @staticmethod
    def _base(p: Any) -> tuple[Any, bool]:
        node = p.type
        if node.kind == "optional" and node.args:
            return node.args[0], True
        return node, False

    def _field_for(self, p: Any) -> Any:
        node, _optional = self._base(p)
        kind = node.kind
        default = p.default if p.has_default else None
        style = {"description_width": "initial"}
        tip = f"{p.name}: {p.type}"
        if kind == "str":
            return w.Text(value=default if isinstance(default, str) else "", description=p.name,
                          tooltip=tip, placeholder=str(p.type), style=style)
        if kind == "int":
            return w.IntText(value=default if isinstance(default, int) and not isinstance(default, bool)
                             else 0, description=p.name, tooltip=tip, style=style)
        if kind == "float":
            return w.FloatText(value=float(default) if isinstance(default, (int, float)) else 0.0,
                               description=p.name, tooltip=tip, style=style)
        if kind == "bool":
            return w.Checkbox(value=bool(default), description=p.name, indent=False, tooltip=tip)
        if kind in _FILE_KINDS:
            return w.FileUpload(accept=_FILE_KINDS[kind], multiple=False,
                                description=f"{p.name} ({node})", tooltip=tip)
        return w.Textarea(value=repr(default) if p.has_default else "", description=p.name,
                          placeholder="a Python literal or JSON", tooltip=tip, style=style)

    def values(self) -> dict[str, Any]:
        """The arguments the fields hold (a parameter left empty keeps its default)."""
        out: dict[str, Any] = {}
        missing = []
        for name, p in self._params.items():
            field = self.fields[name]
            node, optional = self._base(p)
            if isinstance(field, w.FileUpload):
                if not field.value:
                    if p.has_default:
                        continue
                    if optional:
                        out[name] = None
                    else:
                        missing.append(name)
                    continue
                out[name] = self._from_file(node.kind, field.value[0])
            elif isinstance(field, w.Textarea):
                text = field.value.strip()
                if not text:
                    if p.has_default:
                        continue
                    if optional:
                        out[name] = None
                    else:
                        missing.append(name)
                    continue
                out[name] = _parse_literal(name, text)
            elif isinstance(field, w.Text) and optional and field.value == "" and p.default is None:
                out[name] = None
            else:
                out[name] = field.value
        if missing:
            raise ValueError(f"fill in {', '.join(missing)}")
        return out

    @staticmethod
    def _from_file(kind: str, upload: Any) -> Any:
        content = upload["content"]
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        mime = upload.get("type", "") or ""
        if kind == "bytes":
            return data
        if kind == "audio":
            from ..model.types import Audio

            return Audio(data, mime)
        if kind == "video":
            from ..model.types import Video

            return Video(data, mime)
        if kind == "ndarray" and upload.get("name", "").endswith(".npy"):
            import numpy as np

            return np.load(io.BytesIO(data), allow_pickle=False)
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        if kind == "frame":
            from ..model.types import Frame

            return Frame(image)
        if kind == "ndarray":
            import numpy as np

            return np.asarray(image)
        return image

    # ---------------------------------------------------- running

    def _callable(self) -> Any:
        methods = getattr(self.model, "methods", None)
        if isinstance(methods, dict) and self.method in methods:
            return methods[self.method]
        return getattr(self.model, self.method)

    def run(self) -> Any:
        """Call the method with ``values()``, show the rendered result, return it (errors raise)."""
        self.error = None
        self.status_html.value = "running…"
        started = time.monotonic()
        try:
            values = self.values()
            result = self._callable()(**values, **self.call_kwargs)
            if getattr(self.spec, "shape", "unary") == "server_stream":
                items = list(result)
                result = "".join(items) if items and all(isinstance(i, str) for i in items) else items
        except BaseException as e:
            self.error = e
            self.status_html.value = f"<span style='color:#c62828'>{html.escape(_one_line(e))}</span>"
            self._show({"text/plain": _one_line(e)})
            raise
        self.result = result
        image = next((v for v in values.values() if _is_pil(v)), None)
        rendered = render(result, input_image=image)
        self.rendered = rendered
        self._show(rendered.data)
        self.status_html.value = f"done in {time.monotonic() - started:.2f} s"
        return result

    def _show(self, data: dict[str, Any]) -> None:
        self.output.outputs = ({"output_type": "display_data", "data": _jsonable(data), "metadata": {}},)

    def _run_clicked(self) -> None:
        try:
            self.run()
        except Exception:  # noqa: BLE001, S110 - shown in the form; a click has no cell to fail
            pass



def _parse_literal(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{name}: not a Python literal or JSON: {text[:40]!r}") from e


def predict_form(model: Any, method: str = "predict", **routing: Any) -> PredictForm:
    """A form for ``model``'s ``method``: one field per parameter, a run button, the result below.

    ``model`` is a ``Model``, a ``LocalModel`` or a ``RunnerClient``; ``routing``
    (``deployment_id=``, or ``compute_cluster_id=`` with ``nodepool_id=``) is passed to
    every call. Also ``jupyter_deploy.predict_form`` and ``%predict MODEL --form``.

    Example::

        from jupyter_deploy import Model, predict_form

        predict_form(Model("local/default/models/echo"), deployment_id="echo")
    """
    return PredictForm(model, method, **routing)


def deployment_card(deployment: Any, **kwargs: Any) -> Any:
    """A :class:`DeploymentCard` for ``deployment`` (what ``display(deployment)`` shows)."""
    return DeploymentCard(deployment, **kwargs)
