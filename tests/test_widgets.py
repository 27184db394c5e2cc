"""StreamView coalescing in a real IPython shell; DeploymentCard and PredictForm against fakes."""

from __future__ import annotations

import base64
import datetime
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

from jupyter_deploy import Concept, Frame, Region
from jupyter_deploy.model.signature import describe_method
from jupyter_deploy.notebook.widgets import DeploymentCard, PredictForm, StreamView, predict_form


@pytest.fixture
def published(monkeypatch):
    """Every message that goes through a real shell's display publisher, recorded (nothing printed)."""
    shell = InteractiveShell.instance()
    records: list[dict] = []

    def publish(data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        records.append({"data": data, "transient": transient or {}, "update": update})

    monkeypatch.setattr(shell.display_pub, "publish", publish)
    return records


def png(data) -> Image.Image:
    if isinstance(data, str):
        data = base64.b64decode(data)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# ---------------------------------------------------------------- StreamView


def test_text_stream_is_coalesced_by_time_and_ends_exact(published):
    tokens = [f"tok{i} " if i % 17 else f"<{i}>\n" for i in range(10_000)]
    view = StreamView(max_fps=15, live=True)
    started = time.monotonic()
    for i, token in enumerate(tokens):
        view.add(token)
        if i % 100 == 99:
            time.sleep(0.004)  # about 0.4 s in all, so several update windows pass
    view.close()
    elapsed = time.monotonic() - started

    assert view.text == "".join(tokens)
    assert view.items == tokens and view.count == 10_000
    assert len(published) == view.updates
    assert 2 <= view.updates <= 15 * elapsed + 2
    ids = {r["transient"].get("display_id") for r in published}
    assert len(ids) == 1 and None not in ids  # ONE display, updated in place
    assert not published[0]["update"] and all(r["update"] for r in published[1:])
    final = published[-1]["data"]
    assert final["text/plain"] == "".join(tokens)  # exact: no caption in the plain text
    assert "10000 tokens" in final["text/html"] and "tokens/s" in final["text/html"]
    assert "&lt;17&gt;" in final["text/html"]
    assert view.rate > 0 and view.updates_per_second <= 15 + 2 / elapsed


def test_consume_is_coalesced_by_time_and_ends_exact(published):
    # consume() has its own loop for text (the %stream path): same guarantees as add().
    def tokens() -> Iterator[str]:
        for i in range(5_000):
            if i % 100 == 99:
                time.sleep(0.004)
            yield f"t{i} "

    started = time.monotonic()
    view = StreamView(max_fps=15, live=True).consume(tokens())
    elapsed = time.monotonic() - started
    expected = "".join(f"t{i} " for i in range(5_000))
    assert view.closed and view.text == expected and view.count == 5_000 and view.latest == "t4999 "
    assert 3 <= view.updates <= 15 * elapsed + 2 and len(published) == view.updates
    assert len({r["transient"].get("display_id") for r in published}) == 1
    assert published[-1]["data"]["text/plain"] == expected
    assert "5000 tokens" in published[-1]["data"]["text/html"]


def test_a_burst_of_tokens_sends_two_messages(published):
    view = StreamView(max_fps=10, live=True)
    view.extend(str(i) for i in range(10_000))
    view.close()
    assert view.updates <= 3 and len(published) == view.updates
    assert published[-1]["data"]["text/plain"] == "".join(str(i) for i in range(10_000))


def test_markdown_keeps_plain_text_exact(published):
    with StreamView(markdown=True, live=True) as view:
        for t in ["# Title", "\n", "*x*"]:
            view.add(t)
    data = published[-1]["data"]
    assert data["text/plain"] == "# Title\n*x*" and data["text/markdown"].startswith("# Title\n*x*")
    view.close()  # closing twice does nothing
    assert len(published) == view.updates


def test_frames_show_only_the_latest_and_end_as_png(published):
    frames = [Image.new("RGB", (32, 24), (i, 255 - i, 0)) for i in range(200)]
    view = StreamView(max_fps=20, live=True, transport="display")
    started = time.monotonic()
    for i, frame in enumerate(frames):
        view.add(Frame(frame, time=i / 30) if i % 2 else frame)
        time.sleep(0.001)
    view.close()
    elapsed = time.monotonic() - started

    assert view.kind == "frames" and len(view.items) == 200  # every frame kept in items
    assert view.updates <= 20 * elapsed + 2 and len(published) == view.updates
    assert all("image/jpeg" in r["data"] for r in published[:-1])  # live: small JPEGs
    final = published[-1]["data"]
    assert set(final) == {"image/png", "text/plain"}  # a plain image stays in the saved notebook
    image = png(final["image/png"])
    assert image.size == (32, 24) and image.getpixel((0, 0)) == (199, 56, 0)
    assert "frames/s" in final["text/plain"]


def test_frames_without_keep_keep_only_the_latest(published):
    view = StreamView(live=True, keep_frames=False, transport="display")
    for i in range(50):
        view.add(Image.new("L", (4, 4), i))
    view.close()
    assert len(view.items) == 1 and view.items[0].getpixel((0, 0)) == 49 and view.count == 50


def test_frames_through_an_image_widget_end_as_png(published):
    view = StreamView(max_fps=1000, live=True, transport="widget")
    for i in range(5):
        view.add(Image.new("RGB", (8, 8), (i, 0, 0)))
        time.sleep(0.002)
    widget = view._image_widget
    assert widget is not None and bytes(widget.value[:3]) == b"\xff\xd8\xff"  # JPEG bytes as a buffer
    view.close()
    assert "application/vnd.jupyter.widget-view+json" in published[0]["data"]
    final = published[-1]
    assert final["update"] and png(final["data"]["image/png"]).getpixel((0, 0)) == (4, 0, 0)
    assert final["transient"]["display_id"] == published[0]["transient"]["display_id"]


def test_values_show_the_latest_and_end_with_all(published):
    view = StreamView(live=True)
    for i in range(3):
        view.add({"step": i})
    view.close()
    assert view.kind == "values"
    assert published[-1]["data"]["application/json"] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert published[-1]["data"]["text/plain"].startswith("[3 items")


def test_an_interrupted_stream_keeps_what_came(published):
    def tokens() -> Iterator[str]:
        yield "a"
        yield "b"
        raise KeyboardInterrupt

    view = StreamView(live=True)
    with pytest.raises(KeyboardInterrupt):
        view.consume(tokens())
    assert view.closed and view.text == "ab" and published[-1]["data"]["text/plain"] == "ab"


def test_without_a_live_display_text_goes_to_stdout(published, capsys):
    view = StreamView(live=False)
    for t in ["he", "llo", " world"]:
        view.add(t)
    view.close()
    assert capsys.readouterr().out == "hello world\n"
    assert published == []


def test_a_plain_script_gets_the_text():
    code = ("from jupyter_deploy.notebook.widgets import StreamView\n"
            "v = StreamView()\n"
            "[v.add(t) for t in ['x', 'y', 'z']]\n"
            "v.close()\n"
            "import sys; print(v.live, 'ipywidgets' in sys.modules, 'grpc' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "xyz\nFalse True False\n"


def test_terminal_ipython_is_not_live():
    assert StreamView().live is False  # the shell's plain publisher prints every update: stream to stdout
    with pytest.raises(ValueError):
        StreamView(max_fps=0)


# ---------------------------------------------------------------- DeploymentCard


class FakeDeployment:
    def __init__(self, state: str = "RUNNING"):
        self.id = "echo"
        self.calls: list = []
        self.state = state
        self.resource = SimpleNamespace(compute_cluster_id="local", nodepool_id="gpu")
        self.fail: set[str] = set()

    @property
    def status(self) -> dict:
        self.calls.append("status")
        replicas = [] if self.state == "STOPPED" else [
            {"id": "r1", "state": "READY", "address": "127.0.0.1:50051", "version_id": "v3"},
            {"id": "r2", "state": "STARTING", "address": "127.0.0.1:50052", "version_id": "v3"}]
        return {"state": self.state, "reason": "", "version_number": 3, "replicas": replicas,
                "model": "local/default/models/echo"}

    def logs(self, lines: int = 200) -> list[str]:
        self.calls.append(("logs", lines))
        return [f"log line {i}" for i in range(100)][-lines:]

    def _do(self, name: str, state: str | None) -> FakeDeployment:
        self.calls.append(name)
        if name in self.fail:
            raise RuntimeError(f"{name} refused\nsecond line")
        if state:
            self.state = state
        return self

    def start(self):
        return self._do("start", "RUNNING")

    def stop(self):
        return self._do("stop", "STOPPED")

    def delete(self):
        self._do("delete", None)


def actions(dep: FakeDeployment) -> list[str]:
    return [c for c in dep.calls if c in ("start", "stop", "delete")]


def test_card_shows_the_deployment_and_a_plain_summary():
    dep = FakeDeployment()
    card = DeploymentCard(dep, log_lines=5)
    text = repr(card)
    assert "echo" in text and "RUNNING" in text and "version 3" in text and "replicas 1/2 ready" in text
    assert "nodepool local/gpu" in text
    bundle = card._repr_mimebundle_()
    assert bundle["text/plain"] == text  # what a headless run records
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "127.0.0.1:50051" in card.endpoint_html.value and "127.0.0.1:50052" in card.endpoint_html.value
    assert card.log_area.value.splitlines() == [f"log line {i}" for i in range(95, 100)]
    assert "RUNNING" in card.title_html.value
    card.close()


def test_card_buttons_call_the_deployment():
    dep = FakeDeployment()
    card = DeploymentCard(dep)
    card.stop_button.click()
    assert actions(dep) == ["stop"] and "STOPPED" in repr(card) and "replicas 0/0" in repr(card)
    card.start_button.click()
    assert actions(dep) == ["stop", "start"] and "RUNNING" in repr(card)
    before = dep.calls.count("status")
    card.refresh_button.click()
    assert dep.calls.count("status") == before + 1
    card.close()


def test_delete_needs_a_second_click():
    dep = FakeDeployment()
    card = DeploymentCard(dep)
    card.delete_button.click()
    assert actions(dep) == [] and card.delete_armed and card.delete_button.description == "Confirm delete"
    card.refresh_button.click()  # any other action disarms it
    assert not card.delete_armed
    card.delete_button.click()
    card.delete_button.click()
    assert actions(dep) == ["delete"]
    assert "DELETED" in repr(card) and card.start_button.disabled and card.delete_button.disabled
    card.close()


def test_delete_confirmation_expires():
    dep = FakeDeployment()
    card = DeploymentCard(dep, confirm_seconds=0.01)
    card.delete_button.click()
    time.sleep(0.03)
    card.delete_button.click()
    assert actions(dep) == [] and card.delete_armed
    card.close()


def test_card_shows_failures_without_raising():
    dep = FakeDeployment()
    dep.fail.add("start")
    card = DeploymentCard(dep)
    card.start_button.click()
    assert "start failed: RuntimeError: start refused" in card.message_html.value
    assert "second line" not in card.message_html.value


def test_card_live_refresh_runs_and_stops():
    dep = FakeDeployment()
    card = DeploymentCard(dep)
    before = dep.calls.count("status")
    card.start_live(interval=0.02)
    assert card.live_toggle.value
    time.sleep(0.2)
    card.live_toggle.value = False
    after = dep.calls.count("status")
    assert after >= before + 2
    time.sleep(0.1)
    assert dep.calls.count("status") == after
    card.close()


# ---------------------------------------------------------------- PredictForm


class _Signatures:
    def predict(self, text: str, n: int = 3, scale: float = 0.5, loud: bool = False,
                image: Image.Image | None = None, tags: list = ["x"]) -> list[Concept]:  # noqa: B006
        ...

    def detect(self, image: Image.Image) -> list[Region]:
        ...

    def generate(self, text: str) -> Iterator[str]:
        ...

    def stream(self, texts: Iterator[str]) -> Iterator[str]:
        ...


class FakeModel:
    id = "fake"

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.specs = {name: describe_method(name, getattr(_Signatures, name))
                      for name in ("predict", "detect", "generate", "stream")}
        self.methods = {"predict": self._predict, "detect": self._detect, "generate": self._generate}

    def _predict(self, **kwargs):
        self.calls.append(("predict", kwargs))
        return [Concept("a", "alpha", 0.2), Concept("b", "<beta>", 0.7)]

    def _detect(self, **kwargs):
        self.calls.append(("detect", kwargs))
        return [Region((1, 1, 10, 10), [Concept("c", "cat", 0.9)])]

    def _generate(self, **kwargs):
        self.calls.append(("generate", kwargs))
        yield from ["a", "b", "c"]


def upload(data: bytes, name: str = "in.png", mime: str = "image/png") -> tuple:
    return ({"name": name, "type": mime, "size": len(data), "content": memoryview(data),
             "last_modified": datetime.datetime.now(datetime.UTC)},)


def png_bytes(size=(20, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "blue").save(buf, format="PNG")
    return buf.getvalue()


def test_form_fields_follow_the_signature():
    import ipywidgets as w

    form = predict_form(FakeModel())
    f = form.fields
    assert isinstance(f["text"], w.Text) and isinstance(f["n"], w.IntText) and f["n"].value == 3
    assert isinstance(f["scale"], w.FloatText) and f["scale"].value == 0.5
    assert isinstance(f["loud"], w.Checkbox) and f["loud"].value is False
    assert isinstance(f["image"], w.FileUpload) and f["image"].accept == "image/*"
    assert isinstance(f["tags"], w.Textarea) and f["tags"].value == "['x']"
    assert "PredictForm fake.predict(text: str" in form._repr_mimebundle_()["text/plain"]


def test_form_run_button_calls_the_method_and_renders():
    model = FakeModel()
    form = PredictForm(model, "predict", deployment_id="echo")
    form.fields["text"].value = "hi"
    form.fields["loud"].value = True
    form.fields["tags"].value = '["a", "b"]'
    assert form.values() == {"text": "hi", "n": 3, "scale": 0.5, "loud": True, "tags": ["a", "b"]}
    form.run_button.click()
    name, kwargs = model.calls[-1]
    assert name == "predict" and kwargs["text"] == "hi" and kwargs["deployment_id"] == "echo"
    assert [c.name for c in form.result] == ["alpha", "<beta>"]
    html = form.output.outputs[0]["data"]["text/html"]
    assert html.index("&lt;beta&gt;") < html.index("alpha")


def test_form_uploads_become_images_and_regions_are_drawn_on_them():
    model = FakeModel()
    form = predict_form(model, "detect")
    with pytest.raises(ValueError, match="fill in image"):
        form.run()
    assert "fill in image" in form.status_html.value
    form.fields["image"].value = upload(png_bytes((20, 10)))
    image = form.values()["image"]
    assert isinstance(image, Image.Image) and image.size == (20, 10)
    form.run()
    shown = form.output.outputs[0]["data"]
    assert png(shown["image/png"]).size == (20, 10)


def test_form_click_errors_are_shown_not_raised():
    form = predict_form(FakeModel(), "detect")
    form.run_button.click()  # nothing uploaded: the error shows in the form
    assert isinstance(form.error, ValueError)
    assert "fill in image" in form.output.outputs[0]["data"]["text/plain"]


def test_form_for_a_streaming_method_collects_the_stream():
    form = predict_form(FakeModel(), "generate")
    form.fields["text"].value = "go"
    assert form.run() == "abc"
    assert form.output.outputs[0]["data"]["text/plain"] == "abc"


def test_form_refuses_unknown_and_stream_input_methods():
    with pytest.raises(ValueError, match="no method 'nope'"):
        predict_form(FakeModel(), "nope")
    with pytest.raises(ValueError, match="stream of inputs"):
        predict_form(FakeModel(), "stream")


def test_predict_form_is_offered_by_the_package_not_by_the_client():
    import jupyter_deploy
    from jupyter_deploy.client import Model

    assert jupyter_deploy.predict_form is predict_form
    assert not hasattr(Model, "form")  # the client knows no UI
