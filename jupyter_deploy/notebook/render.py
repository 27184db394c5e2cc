"""Render model results by type, as Jupyter mimebundles.

``render(value)`` returns a :class:`Rendered` whose ``_repr_mimebundle_`` holds
``text/plain`` always (what a saved or headless notebook, a terminal and a
static viewer keep) plus the richest type that fits the value::

    from jupyter_deploy.notebook.render import render

    render("hello")                               # text/plain
    render("# Title", markdown=True)              # + text/markdown
    render(pil_image)                             # + image/png
    render(dataframe)                             # + text/html (the frame's own table)
    render([Concept("cat", "Cat", 0.9), ...])     # + text/html: sorted table with bars
    render(regions, input_image=pil_image)        # + image/png: boxes drawn over the image
    render(array)                                 # summary (+ image/png when it is an image)
    render({"a": 1})                              # + application/json (collapsible)
    render(frame)                                 # + image/png
    render(audio), render(video)                  # + text/html: <audio>/<video> with a data URI
    render(my_dataclass)                          # + text/html: a table of its fields

Pillow, numpy and pandas are imported only when a value of theirs is rendered.
``register_formatters(ip)`` makes IPython display our own types (Concept,
Region, Frame, Audio, Video) this way; builtins are left alone.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..model.types import Audio, Concept, Frame, Region, Video

# The IPython formatters (registered by name, so %load_ext imports neither this module nor
# model.types); they call ``render``.
from ._formatters import register_formatters, unregister_formatters

__all__ = [
    "MAX_MEDIA_BYTES",
    "Rendered",
    "draw_regions",
    "looks_like_image",
    "register_formatters",
    "render",
    "to_jpeg",
    "to_png",
    "unregister_formatters",
]

#: Audio and video larger than this are summarised instead of embedded (a saved notebook carries them).
MAX_MEDIA_BYTES = 10_000_000
#: Items of a list (or keys of a dict) shown before "… N more".
MAX_ITEMS = 50
#: text/plain longer than this is cut (the full value stays in the rich types).
MAX_PLAIN = 100_000
_MAX_DEPTH = 4
_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


class Rendered:
    """A rendered value: ``data`` maps MIME types to content; ``text/plain`` is always there."""

    def __init__(self, data: dict[str, Any], value: Any = None):
        if "text/plain" not in data:
            raise ValueError("a rendered bundle needs text/plain")
        self.data = data
        self.value = value

    def _repr_mimebundle_(self, include: Iterable[str] | None = None,
                          exclude: Iterable[str] | None = None) -> dict[str, Any]:
        data = dict(self.data)
        if include:
            data = {k: v for k, v in data.items() if k in set(include)}
        if exclude:
            data = {k: v for k, v in data.items() if k not in set(exclude)}
        return data

    def __repr__(self) -> str:
        return self.data["text/plain"]

    @property
    def mimetypes(self) -> list[str]:
        return list(self.data)

    def html(self) -> str:
        """An HTML fragment for this value (its HTML, its image, or its escaped text)."""
        return _fragment_of(self.data)


def render(value: Any, *, input_image: Any = None, markdown: bool = False,
           max_media_bytes: int = MAX_MEDIA_BYTES) -> Rendered:
    """The mimebundle that shows ``value`` best (see the module's docstring).

    Args:
        input_image: the image that ``Region`` boxes are drawn over (a PIL image,
            an image-like array, encoded bytes or a file path). Boxes whose
            numbers all lie in [0, 1] are taken as fractions of the image's size.
        markdown: also give ``text/markdown`` for a string.
        max_media_bytes: audio and video above this size are summarised, not embedded.
    """
    return Rendered(_bundle(value, input_image, markdown, max_media_bytes, 0), value)


# ---------------------------------------------------------------- dispatch


def _bundle(value: Any, input_image: Any, markdown: bool, max_media: int, depth: int) -> dict[str, Any]:
    if isinstance(value, Rendered):
        return dict(value.data)
    if isinstance(value, str):
        data: dict[str, Any] = {"text/plain": _cut(value)}
        if markdown:
            data["text/markdown"] = value
        return data
    if value is None or isinstance(value, (bool, int, float, complex)):
        return {"text/plain": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_bundle(bytes(value))
    if isinstance(value, Concept):
        return _concepts_bundle([value])
    if isinstance(value, Region):
        return _regions_bundle([value], input_image)
    if isinstance(value, Frame):
        return _frame_bundle(value)
    if isinstance(value, (Audio, Video)):
        return _media_bundle(value, max_media)
    if is_pil(value):
        return _image_bundle(value)
    if is_loaded_type(value, "numpy", "ndarray"):
        return _array_bundle(value)
    if is_loaded_type(value, "numpy", "generic"):
        return {"text/plain": repr(value.item()) if value.ndim == 0 else repr(value)}
    if is_loaded_type(value, "pandas", "DataFrame") or is_loaded_type(value, "pandas", "Series"):
        return _pandas_bundle(value)
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(v, Concept) for v in value):
            return _concepts_bundle(list(value))
        if all(isinstance(v, Region) for v in value):
            return _regions_bundle(list(value), input_image)
    if isinstance(value, (dict, list, tuple)):
        json_bundle = _json_bundle(value)
        if json_bundle is not None:
            return json_bundle
        return _container_bundle(value, input_image, max_media, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_bundle(value, input_image, max_media, depth)
    return {"text/plain": _cut(repr(value))}


def is_loaded_type(value: Any, module: str, name: str) -> bool:
    mod = sys.modules.get(module)  # never import a library just to ask
    return mod is not None and isinstance(value, getattr(mod, name))


def is_pil(value: Any) -> bool:
    image_mod = sys.modules.get("PIL.Image")
    return image_mod is not None and isinstance(value, image_mod.Image)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PLAIN else text[:MAX_PLAIN] + f"… ({len(text) - MAX_PLAIN} more characters)"


def _fragment_of(data: dict[str, Any]) -> str:
    if "text/html" in data:
        return data["text/html"]
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            return _img_tag(data[mime], mime)
    if "application/json" in data:
        return f"<pre style='margin:0'>{html.escape(data['text/plain'])}</pre>"
    return f"<pre style='margin:0;white-space:pre-wrap'>{html.escape(data['text/plain'])}</pre>"


def _img_tag(content: bytes | str, mime: str = "image/png", style: str = "max-width:100%") -> str:
    b64 = content if isinstance(content, str) else base64.b64encode(content).decode("ascii")
    return f"<img src='data:{mime};base64,{b64}' style='{style}'/>"


# ---------------------------------------------------------------- images


def as_pil(image: Any) -> Any:
    """A PIL image from a PIL image, an image-like array, encoded bytes or a path (None if none)."""
    if image is None:
        return None
    if isinstance(image, Frame):
        image = image.image
    if is_pil(image):
        return image
    from PIL import Image

    if is_loaded_type(image, "numpy", "ndarray"):
        if not looks_like_image(image):
            raise ValueError(f"an array of shape {image.shape} and dtype {image.dtype} is not an image")
        return _array_to_pil(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(image)))
    if isinstance(image, (str, Path)):
        return Image.open(image)
    raise TypeError(f"cannot use a {type(image).__name__} as an image")


def to_png(image: Any) -> bytes:
    """PNG bytes of a PIL image (modes PNG cannot hold are converted)."""
    image = as_pil(image)
    if image.mode not in ("1", "L", "LA", "I", "P", "RGB", "RGBA", "I;16"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buf = io.BytesIO()
    try:
        image.save(buf, format="PNG")
    except (OSError, ValueError):
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def to_jpeg(image: Any, quality: int = 85) -> bytes:
    """JPEG bytes (smaller and faster than PNG, for frames shown while a stream runs)."""
    image = as_pil(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _image_plain(image: Any) -> str:
    return f"<PIL.Image {image.mode} {image.width}x{image.height}>"


def _image_bundle(image: Any) -> dict[str, Any]:
    return {"image/png": to_png(image), "text/plain": _image_plain(image)}


def _frame_bundle(frame: Frame) -> dict[str, Any]:
    image = as_pil(frame.image)
    return {"image/png": to_png(image), "text/plain": f"<Frame t={frame.time:g}s {_image_plain(image)[1:]}"}


def _bytes_bundle(data: bytes) -> dict[str, Any]:
    plain = f"<{len(data)} bytes>"
    mime = sniff_image(data)
    if mime is not None:
        return {mime: data, "text/plain": f"<{len(data)} bytes of {mime}>"}
    return {"text/plain": plain}


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


# ---------------------------------------------------------------- arrays and tables


def looks_like_image(array: Any) -> bool:
    """HxW or HxWx3/4, of uint8, or of floats within [0, 1]."""
    import numpy as np

    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        return False
    if array.shape[0] < 2 or array.shape[1] < 2 or array.shape[0] * array.shape[1] > 50_000_000:
        return False
    if array.dtype == np.uint8:
        return True
    if np.issubdtype(array.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            return bool(np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0)
    return False


def _array_to_pil(array: Any) -> Any:
    import numpy as np
    from PIL import Image

    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[array.ndim if array.ndim == 2 else array.shape[2]]
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)


def _array_summary(array: Any) -> str:
    import numpy as np

    text = f"ndarray shape={tuple(array.shape)} dtype={array.dtype}"
    if array.size and (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        values = array.astype(np.float64) if array.dtype == np.bool_ else array
        with np.errstate(all="ignore"):
            text += f" min={_num(values.min())} max={_num(values.max())} mean={_num(values.mean())}"
    return text


def _num(x: Any) -> str:
    x = x.item() if hasattr(x, "item") else x
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _array_bundle(array: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"text/plain": _array_summary(array)}
    if looks_like_image(array):
        data["image/png"] = to_png(_array_to_pil(array))
    return data


def _pandas_bundle(frame: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"text/plain": _cut(repr(frame))}
    to_html = getattr(frame, "_repr_html_", None)
    table = to_html() if to_html is not None else None
    if table is None and hasattr(frame, "to_frame"):
        table = frame.to_frame()._repr_html_()
    if table is None:
        table = frame.to_html() if hasattr(frame, "to_html") else None
    if table:
        data["text/html"] = table
    return data


# ---------------------------------------------------------------- concepts and regions


def _concept_label(c: Concept) -> str:
    return c.name or c.id


def _concepts_bundle(concepts: list[Concept]) -> dict[str, Any]:
    ordered = sorted(concepts, key=lambda c: c.value, reverse=True)
    top = max((abs(c.value) for c in ordered), default=1.0)
    scale = max(1.0, top)  # scores in [0, 1] show as they are, others relative to the largest
    width = max((len(_concept_label(c)) for c in ordered), default=4)
    plain = "\n".join(f"{_concept_label(c):<{width}}  {c.value:.3f}" for c in ordered)
    rows = []
    for c in ordered[:200]:
        pct = max(0.0, min(100.0, 100.0 * c.value / scale))
        title = f" title='{html.escape(c.id, quote=True)}'" if c.id and c.id != c.name else ""
        rows.append(
            f"<tr><td style='padding:2px 8px;text-align:left'{title}>{html.escape(_concept_label(c))}</td>"
            f"<td style='padding:2px 8px;text-align:right;font-family:monospace'>{c.value:.3f}</td>"
            f"<td style='padding:2px 8px;width:12em'><div style='background:#4c8bf5;height:0.8em;"
            f"width:{pct:.1f}%'></div></td></tr>")
    if len(ordered) > 200:
        rows.append(f"<tr><td colspan='3'>… {len(ordered) - 200} more</td></tr>")
    table = ("<table class='jd-concepts' style='border-collapse:collapse'>"
             "<thead><tr><th style='text-align:left;padding:2px 8px'>concept</th>"
             "<th style='text-align:right;padding:2px 8px'>value</th><th></th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    return {"text/html": table, "text/plain": plain}


def _region_label(region: Region) -> str:
    if not region.concepts:
        return ""
    best = max(region.concepts, key=lambda c: c.value)
    return f"{_concept_label(best)} {best.value:.2f}"


def _regions_plain(regions: list[Region]) -> str:
    lines = []
    for r in regions:
        box = ", ".join(f"{v:g}" for v in r.box)
        lines.append(f"({box})  {_region_label(r)}".rstrip())
    return "\n".join(lines)


def _regions_bundle(regions: list[Region], input_image: Any) -> dict[str, Any]:
    plain = _regions_plain(regions)
    if input_image is None:
        rows = "".join(
            f"<tr><td style='padding:2px 8px;font-family:monospace'>"
            f"{html.escape(', '.join(f'{v:g}' for v in r.box))}</td>"
            f"<td style='padding:2px 8px'>{html.escape(_region_label(r))}</td></tr>" for r in regions)
        table = ("<table class='jd-regions' style='border-collapse:collapse'><thead><tr>"
                 "<th style='padding:2px 8px'>box (x0, y0, x1, y1)</th><th style='padding:2px 8px'>concept</th>"
                 f"</tr></thead><tbody>{rows}</tbody></table>")
        return {"text/html": table, "text/plain": plain}
    image = draw_regions(input_image, regions)
    return {"image/png": to_png(image), "text/plain": f"{_image_plain(image)} with {len(regions)} regions\n{plain}"}


def draw_regions(image: Any, regions: list[Region]) -> Any:
    """A copy of ``image`` with each region's box and best concept drawn on it."""
    from PIL import ImageDraw

    image = as_pil(image)
    image = image.convert("RGBA" if "A" in image.mode else "RGB")
    w, h = image.size
    normalized = bool(regions) and all(0.0 <= v <= 1.0 for r in regions for v in r.box)
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(w, h) / 200))
    for i, r in enumerate(regions):
        x0, y0, x1, y1 = r.box
        if normalized:
            x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        color = _COLORS[i % len(_COLORS)]
        draw.rectangle([x0, y0, x1, y1], outline=color, width=line)
        label = _region_label(r)
        if label:
            left, top, right, bottom = draw.textbbox((0, 0), label)
            ty = y0 - (bottom - top) - 4 if y0 - (bottom - top) - 4 >= 0 else y0
            draw.rectangle([x0, ty, x0 + (right - left) + 4, ty + (bottom - top) + 4], fill=color)
            draw.text((x0 + 2, ty + 2 - top), label, fill="white")
    return image


# ---------------------------------------------------------------- media


def _sniff_media(data: bytes, kind: str) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"OggS":
        return f"{kind}/ogg"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if data[4:8] == b"ftyp":
        return f"{kind}/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return f"{kind}/webm"
    return "audio/wav" if kind == "audio" else "video/mp4"


def _media_bundle(media: Audio | Video, max_media: int) -> dict[str, Any]:
    kind = "audio" if isinstance(media, Audio) else "video"
    data = bytes(media.bytes)
    mime = media.mime or _sniff_media(data, kind)
    plain = f"<{type(media).__name__} {mime}, {len(data)} bytes>"
    if len(data) > max_media:
        return {"text/plain": plain + f" (over {max_media} bytes: not embedded)"}
    b64 = base64.b64encode(data).decode("ascii")
    style = " style='max-width:100%'" if kind == "video" else ""
    tag = (f"<{kind} controls{style}><source src='data:{html.escape(mime, quote=True)};base64,{b64}' "
           f"type='{html.escape(mime, quote=True)}'/>Your browser cannot play {html.escape(mime)}.</{kind}>")
    return {"text/html": tag, "text/plain": plain}


# ---------------------------------------------------------------- JSON, containers, dataclasses


def _json_bundle(value: Any) -> dict[str, Any] | None:
    try:
        dumped = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return {"application/json": json.loads(dumped),
            "text/plain": _cut(json.dumps(value, indent=2, ensure_ascii=False))}


def _container_bundle(value: Any, input_image: Any, max_media: int, depth: int) -> dict[str, Any]:
    plain = _cut(repr(value))
    if depth >= _MAX_DEPTH:
        return {"text/plain": plain}
    cell = "padding:2px 8px;vertical-align:top;text-align:left"
    if isinstance(value, dict):
        items = list(value.items())
        rows = "".join(
            f"<tr><td style='{cell};font-family:monospace'>{html.escape(str(k))}</td>"
            f"<td style='{cell}'>{_fragment_of(_bundle(v, input_image, False, max_media, depth + 1))}</td></tr>"
            for k, v in items[:MAX_ITEMS])
    else:
        items = list(value)
        rows = "".join(
            f"<tr><td style='{cell};font-family:monospace'>{i}</td>"
            f"<td style='{cell}'>{_fragment_of(_bundle(v, input_image, False, max_media, depth + 1))}</td></tr>"
            for i, v in enumerate(items[:MAX_ITEMS]))
    if len(items) > MAX_ITEMS:
        rows += f"<tr><td colspan='2' style='{cell}'>… {len(items) - MAX_ITEMS} more</td></tr>"
    return {"text/html": f"<table style='border-collapse:collapse'><tbody>{rows}</tbody></table>",
            "text/plain": plain}


def _dataclass_bundle(value: Any, input_image: Any, max_media: int, depth: int) -> dict[str, Any]:
    plain = _cut(repr(value))
    if depth >= _MAX_DEPTH:
        return {"text/plain": plain}
    cell = "padding:2px 8px;vertical-align:top;text-align:left"
    rows = "".join(
        f"<tr><th style='{cell}'>{html.escape(f.name)}</th><td style='{cell}'>"
        f"{_fragment_of(_bundle(getattr(value, f.name), input_image, False, max_media, depth + 1))}</td></tr>"
        for f in dataclasses.fields(value))
    caption = f"<caption style='text-align:left;font-weight:bold'>{html.escape(type(value).__name__)}</caption>"
    return {"text/html": f"<table style='border-collapse:collapse'>{caption}<tbody>{rows}</tbody></table>",
            "text/plain": plain}
