"""render(): the mimebundle each result type gets, and IPython formatters for our types."""

from __future__ import annotations

import base64
import io
import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from jupyter_deploy import Audio, Concept, Frame, Region, Video
from jupyter_deploy.notebook.render import (
    MAX_MEDIA_BYTES,
    Rendered,
    looks_like_image,
    register_formatters,
    render,
    unregister_formatters,
)


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_text_is_plain_and_markdown_on_request():
    assert render("hello")._repr_mimebundle_() == {"text/plain": "hello"}
    bundle = render("# Title", markdown=True)._repr_mimebundle_()
    assert bundle == {"text/plain": "# Title", "text/markdown": "# Title"}
    assert repr(render("hello")) == "hello"


def test_include_and_exclude_filter_the_bundle():
    r = render({"a": 1})
    assert set(r._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert set(r._repr_mimebundle_(exclude=["text/plain"])) == {"application/json"}


def test_pil_image_is_png_of_the_same_size():
    bundle = render(Image.new("RGB", (40, 30), "red"))._repr_mimebundle_()
    image = png_image(bundle["image/png"])
    assert image.size == (40, 30) and image.getpixel((0, 0)) == (255, 0, 0)
    assert "40x30" in bundle["text/plain"]


def test_cmyk_image_still_renders():
    bundle = render(Image.new("CMYK", (8, 6)))._repr_mimebundle_()
    assert png_image(bundle["image/png"]).size == (8, 6)


def test_dataframe_uses_its_own_html():
    df = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    bundle = render(df)._repr_mimebundle_()
    assert bundle["text/html"] == df._repr_html_()
    assert bundle["text/plain"] == repr(df)


def test_concepts_sorted_by_value_with_bars_and_escaped_names():
    concepts = [Concept("a", "alpha", 0.1), Concept("b", "<beta>", 0.9), Concept("c", "gamma", 0.5)]
    bundle = render(concepts)._repr_mimebundle_()
    html = bundle["text/html"]
    positions = [html.index(name) for name in ("&lt;beta&gt;", "gamma", "alpha")]
    assert positions == sorted(positions)
    assert "<beta>" not in html
    assert "width:90.0%" in html and "width:50.0%" in html
    assert bundle["text/plain"].splitlines()[0].startswith("<beta>")


def test_regions_drawn_over_the_input_image():
    image = Image.new("RGB", (100, 80), "white")
    regions = [Region((10, 10, 50, 40), [Concept("cat", "cat", 0.8)]), Region((60, 20, 90, 70))]
    bundle = render(regions, input_image=image)._repr_mimebundle_()
    drawn = png_image(bundle["image/png"]).convert("RGB")
    assert drawn.size == (100, 80)
    assert drawn.getpixel((10, 25)) != (255, 255, 255)  # the left edge of the first box
    assert drawn.getpixel((75, 45)) == (255, 255, 255)  # inside the second box: untouched
    assert "cat 0.80" in bundle["text/plain"]
    assert image.getpixel((10, 25)) == (255, 255, 255)  # the input is not modified


def test_normalized_regions_scale_to_the_image():
    image = Image.new("RGB", (200, 100), "white")
    bundle = render([Region((0.5, 0.5, 0.9, 0.9))], input_image=np.asarray(image))._repr_mimebundle_()
    drawn = png_image(bundle["image/png"]).convert("RGB")
    assert drawn.getpixel((100, 70)) != (255, 255, 255)
    assert drawn.getpixel((50, 25)) == (255, 255, 255)


def test_regions_without_an_image_are_a_table():
    bundle = render([Region((1, 2, 3, 4), [Concept("d", "<dog>", 0.7)])])._repr_mimebundle_()
    assert "image/png" not in bundle
    assert "&lt;dog&gt; 0.70" in bundle["text/html"] and "1, 2, 3, 4" in bundle["text/html"]


def test_ndarray_summary_and_image_when_it_is_one():
    bundle = render(np.arange(6, dtype=np.int64).reshape(2, 3))._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    assert "shape=(2, 3)" in bundle["text/plain"] and "min=0 max=5 mean=2.5" in bundle["text/plain"]

    rgb = np.zeros((12, 20, 3), dtype=np.uint8)
    assert png_image(render(rgb)._repr_mimebundle_()["image/png"]).size == (20, 12)
    gray = np.linspace(0, 1, 50).reshape(5, 10)
    image = png_image(render(gray)._repr_mimebundle_()["image/png"])
    assert image.size == (10, 5) and image.mode == "L"
    assert "image/png" not in render(gray * 2)._repr_mimebundle_()  # floats past 1: not an image
    assert not looks_like_image(np.zeros((4, 4, 5), dtype=np.uint8))


def test_json_bundle_equals_the_value():
    value = {"a": 1, "b": [1, 2, {"c": None}], "d": "é"}
    bundle = render(value)._repr_mimebundle_()
    assert bundle["application/json"] == value
    assert json.loads(bundle["text/plain"]) == value
    assert render([1, "x"])._repr_mimebundle_()["application/json"] == [1, "x"]


def test_frame_is_png():
    bundle = render(Frame(Image.new("RGB", (16, 9)), time=1.5))._repr_mimebundle_()
    assert png_image(bundle["image/png"]).size == (16, 9)
    assert "t=1.5s" in bundle["text/plain"]


def test_audio_and_video_embed_under_the_cap():
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 32
    bundle = render(Audio(wav))._repr_mimebundle_()
    assert "<audio controls" in bundle["text/html"]
    assert base64.b64encode(wav).decode() in bundle["text/html"] and "audio/wav" in bundle["text/html"]
    video = render(Video(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16))._repr_mimebundle_()
    assert "<video controls" in video["text/html"] and "video/mp4" in video["text/html"]
    big = render(Audio(b"\x00" * 100, "audio/wav"), max_media_bytes=10)._repr_mimebundle_()
    assert set(big) == {"text/plain"} and "not embedded" in big["text/plain"]
    assert MAX_MEDIA_BYTES >= 1_000_000


def test_dataclass_is_a_table_of_rendered_fields():
    @dataclass
    class Result:
        label: str
        score: float
        thumb: Image.Image
        tags: list

    value = Result("<cat>", 0.5, Image.new("RGB", (4, 4)), ["a"])
    bundle = render(value)._repr_mimebundle_()
    assert bundle["text/plain"] == repr(value)
    html = bundle["text/html"]
    assert "&lt;cat&gt;" in html and "data:image/png;base64," in html and "<caption" in html
    assert html.index("label") < html.index("score") < html.index("thumb") < html.index("tags")


def test_lists_of_images_and_other_objects_fall_back_cleanly():
    bundle = render([Image.new("RGB", (2, 2)), Concept("x")])._repr_mimebundle_()
    assert bundle["text/html"].count("data:image/png;base64,") == 1 and "jd-concepts" in bundle["text/html"]
    assert render(object()).data["text/plain"].startswith("<object object")
    assert render(Rendered({"text/plain": "x"})).data == {"text/plain": "x"}
    assert render(b"\x89PNG\r\n\x1a\n...")._repr_mimebundle_()["image/png"].startswith(b"\x89PNG")
    assert render(None).data == {"text/plain": "None"}


def test_formatters_only_for_our_types():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    formatters = ip.display_formatter.formatters
    register_formatters(ip)
    try:
        data, _ = ip.display_formatter.format(Concept("c", "<c>", 0.5))
        assert "&lt;c&gt;" in data["text/html"]
        data, _ = ip.display_formatter.format(Frame(Image.new("RGB", (3, 2))))
        assert png_image(data["image/png"]).size == (3, 2)
        data, _ = ip.display_formatter.format([Concept("c", "c", 0.5)])  # what a model returns
        assert "jd-concepts" in data["text/html"]
        data, _ = ip.display_formatter.format([1, Concept("c")])  # any other list: as always
        assert "text/html" not in data
    finally:
        unregister_formatters(ip)
    assert Concept not in formatters["text/html"].type_printers
    assert list not in formatters["text/html"].type_printers
    assert "text/html" not in ip.display_formatter.format(Concept("c"))[0]


def test_render_imports_nothing_heavy():
    import subprocess

    code = ("import sys, jupyter_deploy.notebook.render as r; r.render('x'); r.render({'a': 1}); "
            "print(sorted(m for m in ('grpc', 'numpy', 'pandas', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
