"""PredictForm: a form built from a model method's signature, with a run button.

Example::

    from jupyter_deploy import Model, predict_form

    form = predict_form(Model("local/default/models/echo"))
    form.fields["text"].value = "hi"
    form.run()
"""

from __future__ import annotations

import ast
import html
import io
import json
import time
from typing import Any

import ipywidgets as w

from ...model.types import Audio, Frame, Video
from ..render import is_pil, render
from ._shared import SummaryRepr, colored, jsonable, one_line

_FILE_KINDS = {"image": "image/*", "bytes": "", "audio": "audio/*", "video": "video/*",
               "frame": "image/*", "ndarray": "image/*,.npy"}


class PredictForm(SummaryRepr, w.VBox):
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
        run_row = w.HBox([self.run_button, self.status_html])
        super().__init__([header, *self.fields.values(), run_row, self.output])

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
            whole = isinstance(default, int) and not isinstance(default, bool)
            return w.IntText(value=default if whole else 0, description=p.name, tooltip=tip,
                             style=style)
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
            if isinstance(field, (w.FileUpload, w.Textarea)):
                upload = isinstance(field, w.FileUpload)
                given = field.value if upload else field.value.strip()
                if not given:  # empty: the default, else None where optional, else missing
                    if p.has_default:
                        continue
                    if optional:
                        out[name] = None
                    else:
                        missing.append(name)
                    continue
                out[name] = (self._from_file(node.kind, given[0]) if upload
                             else _parse_literal(name, given))
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
            return Audio(data, mime)
        if kind == "video":
            return Video(data, mime)
        if kind == "ndarray" and upload.get("name", "").endswith(".npy"):
            import numpy as np

            return np.load(io.BytesIO(data), allow_pickle=False)
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        if kind == "frame":
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
                text = items and all(isinstance(i, str) for i in items)
                result = "".join(items) if text else items
        except BaseException as e:
            self.error = e
            self.status_html.value = colored(one_line(e))
            self._show({"text/plain": one_line(e)})
            raise
        self.result = result
        image = next((v for v in values.values() if is_pil(v)), None)
        rendered = render(result, input_image=image)
        self.rendered = rendered
        self._show(rendered.data)
        self.status_html.value = f"done in {time.monotonic() - started:.2f} s"
        return result

    def _show(self, data: dict[str, Any]) -> None:
        self.output.outputs = (
            {"output_type": "display_data", "data": jsonable(data), "metadata": {}},)

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
