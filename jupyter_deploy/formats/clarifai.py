"""Clarifai model folders, served without the ``clarifai`` package.

A Clarifai ``1/model.py`` subclasses ``clarifai.runners.models.model_class.ModelClass`` and
types its methods with ``clarifai.runners.utils.data_types`` (``Text``, ``Image``, ``Audio``,
``Video``, ``Concept``, ``Region``, ``Frame``, ``NamedFields``, ``Stream``). This module
provides those names (:func:`install` puts them in ``sys.modules``) and :func:`serve` wraps
the Clarifai class in a jupyter_deploy ``ModelClass`` with the same method and parameter
names; each Clarifai type crosses the wire as its jupyter_deploy counterpart:

==============  ==========================
Clarifai        jupyter_deploy
==============  ==========================
Text            str
Image           PIL.Image.Image
Audio, Video    Audio, Video
Concept         Concept
Region          Region (box and concepts)
Frame           Frame
NamedFields     a dataclass of its fields
Stream[T]       Iterator[T]
==============  ==========================

The generated folder's ``1/model.py`` is three lines that call :func:`serve` on the
folder's own model.py, copied unchanged to ``1/clarifai_model.py``.

Example::

    from jupyter_deploy.formats.clarifai import serve

    MyModel = serve(Path(__file__).with_name("clarifai_model.py"), __name__)
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib.util
import inspect
import io
import shutil
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ModelDefinitionError
from ..model import ModelClass
from ..model import types as ours

_MARK = "__clarifai_method__"


# ---------------------------------------------------------------- clarifai.runners.utils.data_types


@dataclasses.dataclass
class Text:
    """Clarifai's ``Text``: ``Text("hello")``; ``.text``."""

    text: str = ""
    url: str | None = None


class _Media:
    def __init__(self, bytes: bytes = b"", url: str | None = None):  # noqa: A002 - Clarifai's name
        self.bytes, self.url = bytes, url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.bytes)} bytes)"


class Image(_Media):
    """Clarifai's ``Image``: ``Image(bytes=...)``, ``Image.from_pil(im)``, ``.to_pil()``, ``.to_numpy()``."""

    @classmethod
    def from_pil(cls, image: Any) -> "Image":
        out = io.BytesIO()
        image.save(out, format="PNG")
        made = cls(out.getvalue())
        made._pil = image
        return made

    def to_pil(self) -> Any:
        pil = getattr(self, "_pil", None)
        if pil is None:
            from PIL import Image as PILImage

            pil = self._pil = PILImage.open(io.BytesIO(self.bytes))
        return pil

    def to_numpy(self) -> Any:
        import numpy as np

        return np.asarray(self.to_pil())


class Audio(_Media):
    """Clarifai's ``Audio``: the file's bytes."""


class Video(_Media):
    """Clarifai's ``Video``: the file's bytes."""


class Concept:
    """Clarifai's ``Concept``: ``Concept("cat", 0.9)``, ``Concept(name="dog", value=0.2, id="d")``."""

    def __init__(self, name: str, value: float = 0.0, id: str | None = None):  # noqa: A002
        self.name, self.value, self.id = name, float(value), id if id is not None else name

    def __repr__(self) -> str:
        return f"Concept({self.name!r}, {self.value})"


class Region:
    """Clarifai's ``Region``: ``Region(box=[x0, y0, x1, y1], concepts=[...])``."""

    def __init__(self, box: Any = (0.0, 0.0, 0.0, 0.0), concepts: list | None = None, **_: Any):
        self.box, self.concepts = [float(v) for v in box], list(concepts or [])


class Frame:
    """Clarifai's ``Frame``: ``Frame(image=Image(...), time=1.5)``."""

    def __init__(self, image: Image | None = None, time: float = 0.0, **_: Any):
        self.image, self.time = image, float(time)


class NamedFields(dict):
    """Clarifai's ``NamedFields``: in an annotation, field -> type; as a value, field -> value
    (read as items or attributes)."""

    def __init__(self, **fields: Any):
        super().__init__(**fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


Stream = Iterator  # Stream[T] is an Iterator of T


def Param(default: Any = None, **_: Any) -> Any:  # noqa: N802 - Clarifai's name
    """Clarifai's ``Param(default=..., description=...)`` as a parameter's default: the default."""
    return default


# ---------------------------------------------------------------- clarifai.runners.models.model_class


class ClarifaiModelClass:
    """Clarifai's ``ModelClass``: ``load_model`` and ``@ModelClass.method``."""

    def load_model(self) -> None:
        pass

    @staticmethod
    def method(func: Any = None, **_: Any) -> Any:
        def mark(f: Any) -> Any:
            setattr(f, _MARK, True)
            return f

        return mark if func is None else mark(func)


def install() -> None:
    """Make ``clarifai.runners.models.model_class``, ``clarifai.runners.utils.data_types`` and
    ``clarifai.runners.utils.data_utils`` importable (the rest of clarifai, where installed,
    stays as it is)."""
    leaves = {
        "clarifai.runners.models.model_class": {"ModelClass": ClarifaiModelClass},
        "clarifai.runners.utils.data_types": {
            "Text": Text, "Image": Image, "Audio": Audio, "Video": Video, "Concept": Concept,
            "Region": Region, "Frame": Frame, "NamedFields": NamedFields, "Stream": Stream},
        "clarifai.runners.utils.data_utils": {"Param": Param},
    }
    if sys.modules.get("clarifai.runners.utils.data_types") is not None and getattr(
            sys.modules["clarifai.runners.utils.data_types"], "__jupyter_deploy__", False):
        return
    real = importlib.util.find_spec("clarifai") is not None
    for name, attrs in leaves.items():
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if not real and parent not in sys.modules:
                stub = types.ModuleType(parent)
                stub.__path__ = []  # a package, so that its children import
                sys.modules[parent] = stub
        module = types.ModuleType(name)
        module.__dict__.update(attrs, __jupyter_deploy__=True)
        sys.modules[name] = module
        parent = sys.modules.get(".".join(parts[:-1]))
        if parent is not None:
            setattr(parent, parts[-1], module)


# ---------------------------------------------------------------- types and values, both ways


@dataclasses.dataclass
class _Conv:
    outer: Any  # our annotation
    inward: Callable[[Any], Any] | None = None  # our value -> Clarifai's
    outward: Callable[[Any], Any] | None = None  # Clarifai's value -> ours


def _each(conv: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    return None if conv is None else (lambda values: [conv(v) for v in values])


def _convert(ann: Any, where: str) -> _Conv:
    """Our annotation for a Clarifai one, and the value conversions (None: as it is)."""
    if isinstance(ann, NamedFields):
        fields = {name: _convert(t, f"{where} field {name!r}") for name, t in ann.items()}
        cls = dataclasses.make_dataclass("Fields", [(name, c.outer) for name, c in fields.items()])

        def inward(value: Any) -> Any:
            return NamedFields(**{n: (c.inward or _same)(getattr(value, n)) for n, c in fields.items()})

        def outward(value: Any) -> Any:
            get = value.__getitem__ if isinstance(value, dict) else lambda n: getattr(value, n)
            return cls(**{n: (c.outward or _same)(get(n)) for n, c in fields.items()})

        return _Conv(cls, inward, outward)
    simple = {
        Text: _Conv(str, lambda v: Text(v), lambda v: v.text if isinstance(v, Text) else str(v)),
        Image: _Conv(_pil_image(), Image.from_pil, lambda v: v.to_pil() if isinstance(v, Image) else v),
        Audio: _Conv(ours.Audio, lambda v: Audio(v.bytes), lambda v: ours.Audio(v.bytes)),
        Video: _Conv(ours.Video, lambda v: Video(v.bytes), lambda v: ours.Video(v.bytes)),
        Concept: _Conv(ours.Concept, _concept_in, _concept_out),
        Region: _Conv(ours.Region, lambda v: Region(list(v.box), [_concept_in(c) for c in v.concepts]),
                      lambda v: ours.Region(tuple(v.box), [_concept_out(c) for c in v.concepts])),
        Frame: _Conv(ours.Frame, lambda v: Frame(Image.from_pil(v.image), v.time),
                     lambda v: ours.Frame(v.image.to_pil() if isinstance(v.image, Image) else v.image, v.time)),
    }
    if isinstance(ann, type) and ann in simple:
        return simple[ann]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is list and args:
        inner = _convert(args[0], where)
        return _Conv(list[inner.outer], _each(inner.inward), _each(inner.outward))
    if origin is dict and len(args) == 2:
        inner = _convert(args[1], where)
        wrap = (lambda c: None if c is None else (lambda d: {k: c(v) for k, v in d.items()}))
        return _Conv(dict[args[0], inner.outer], wrap(inner.inward), wrap(inner.outward))
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        inner = _convert(next(a for a in args if a is not type(None)), where)
        opt = (lambda c: None if c is None else (lambda v: None if v is None else c(v)))
        return _Conv(typing.Optional[inner.outer], opt(inner.inward), opt(inner.outward))
    if origin in (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator) and args:
        inner = _convert(args[0], where)
        lazy = (lambda c: None if c is None else (lambda items: (c(v) for v in items)))
        return _Conv(Iterator[inner.outer], lazy(inner.inward), lazy(inner.outward))
    if origin is tuple:
        raise ModelDefinitionError(f"{where}: Tuple types are not served here; return a NamedFields instead")
    return _Conv(ann)


def _same(value: Any) -> Any:
    return value


def _pil_image() -> Any:
    from PIL import Image as PILImage

    return PILImage.Image


def _concept_in(v: Any) -> Concept:
    return Concept(v.name or v.id, v.value, v.id)


def _concept_out(v: Any) -> ours.Concept:
    return ours.Concept(id=str(v.id or v.name), name=v.name, value=float(v.value))


# ---------------------------------------------------------------- the wrapper class


def serve(file: str | Path, module_name: str) -> type[ModelClass]:
    """A jupyter_deploy ModelClass (of module ``module_name``) serving the Clarifai model in
    ``file``: the same methods, parameter names and defaults, docstrings and load_model."""
    from ..folder import _import_file

    install()
    file = Path(file).resolve()
    module, name = _import_file(file, file.read_text(), "jupyter_deploy_clarifai_")
    found = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, ClarifaiModelClass)
             and c is not ClarifaiModelClass and c.__module__ == name]
    if len(found) != 1:
        raise ModelDefinitionError(f"{file}: must define exactly one Clarifai ModelClass subclass, found "
                                   f"{len(found)}" + (f" ({', '.join(c.__name__ for c in found)})" if found else ""))
    cls = found[0]
    ns: dict[str, Any] = {"__module__": module_name, "__doc__": cls.__doc__, "__qualname__": cls.__name__}

    def load_model(self: Any) -> None:
        self.clarifai_model = cls()
        self.clarifai_model.load_model()

    ns["load_model"] = load_model
    # In the order the class (and its bases) define them, as the Clarifai model lists them.
    names = list(dict.fromkeys(n for klass in reversed(cls.__mro__) for n, v in vars(klass).items()
                               if getattr(v, _MARK, False)))
    if not names:
        raise ModelDefinitionError(f"{file}: {cls.__name__} has no @ModelClass.method")
    for method in names:
        ns[method] = ModelClass.method(_wrap(cls, method, f"{cls.__name__}.{method}()"))
    if callable(getattr(cls, "test", None)):
        ns["test"] = lambda self: self.clarifai_model.test()
    return type(cls.__name__, (ModelClass,), ns)


def _wrap(cls: type, method: str, where: str) -> Any:
    func = getattr(cls, method)
    try:
        hints = typing.get_type_hints(func)
    except Exception as e:  # noqa: BLE001 - a name the annotations use is missing
        raise ModelDefinitionError(f"{where}: cannot resolve its type hints: {e}") from None
    sig = inspect.signature(func)
    convs: dict[str, _Conv] = {}
    params = []
    for p in list(sig.parameters.values())[1:]:
        if p.name not in hints:
            raise ModelDefinitionError(f"{where} parameter '{p.name}': no type annotation")
        conv = convs[p.name] = _convert(hints[p.name], f"{where} parameter '{p.name}'")
        default = p.default
        if default is not p.empty and default is not None and conv.outward is not None:
            default = conv.outward(default)
        params.append(p.replace(annotation=conv.outer, default=default))
    if "return" not in hints:
        raise ModelDefinitionError(f"{where}: no return annotation")
    ret = _convert(hints["return"], f"{where} return")
    streams = typing.get_origin(ret.outer) is collections.abc.Iterator
    item_out = _convert(typing.get_args(hints["return"])[0], where).outward if streams else ret.outward

    def inward(self: Any, args: tuple, kwargs: dict) -> dict:
        bound = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params]) \
            .bind(self, *args, **kwargs)
        out = {}
        for n, v in bound.arguments.items():
            if n != "self":
                conv = convs[n].inward
                out[n] = v if conv is None or v is None else conv(v)
        return out

    out = item_out or _same
    if inspect.isasyncgenfunction(func):
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            async for item in getattr(self.clarifai_model, method)(**inward(self, args, kwargs)):
                yield out(item)
    elif inspect.iscoroutinefunction(func):
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return out(await getattr(self.clarifai_model, method)(**inward(self, args, kwargs)))
    elif inspect.isgeneratorfunction(func) or streams:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            for item in getattr(self.clarifai_model, method)(**inward(self, args, kwargs)):
                yield out(item)
    else:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return out(getattr(self.clarifai_model, method)(**inward(self, args, kwargs)))
    wrapper.__name__ = wrapper.__qualname__ = method
    wrapper.__doc__ = func.__doc__
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[list(sig.parameters.values())[0], *params], return_annotation=ret.outer)
    wrapper.__annotations__ = {**{p.name: p.annotation for p in params}, "return": ret.outer}
    return wrapper


# ---------------------------------------------------------------- converting a folder

_MODEL_PY = '''"""The Clarifai model in clarifai_model.py (this folder's own 1/model.py, unchanged), served by
jupyter_deploy without the clarifai package: jupyter_deploy.formats.clarifai provides the
clarifai modules it imports and maps its types to jupyter_deploy's.
"""

from pathlib import Path

from jupyter_deploy.formats.clarifai import serve

{name} = serve(Path(__file__).with_name("clarifai_model.py"), __name__)
'''


def convert(src: Path, dest: Path, model_id: str) -> None:
    """Write the served folder for the Clarifai folder ``src`` into ``dest`` (empty)."""
    import ast

    from ..config import default_config, dump_config

    source = (src / "1" / "model.py").read_text()
    try:
        tree = ast.parse(source, str(src / "1" / "model.py"))
    except SyntaxError as e:
        from ..folder import _syntax_message

        raise ModelDefinitionError(_syntax_message(e)) from None
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and any(
        (b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")) == "ModelClass" for b in n.bases)]
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    (dest / "1" / "model.py").rename(dest / "1" / "clarifai_model.py")
    (dest / "1" / "model.py").write_text(_MODEL_PY.format(name=classes[0] if classes else "Model"))
    config = dest / "config.yaml"
    if config.is_file():
        import yaml

        data = yaml.safe_load(config.read_text()) or {}
        model = data.setdefault("model", {})
        # user_id and app_id name a Clarifai account and app: here the uploader's, in app default.
        dropped = {k: model.pop(k) for k in ("user_id", "app_id") if k in model}
        model["id"] = model_id
        note = "".join(f"# model.{k}: {v!r} (Clarifai's) not used: the model is the uploader's\n"
                       for k, v in dropped.items())
        config.write_text(note + dump_config(data))
    else:
        config.write_text(dump_config(default_config(model_id)))
    requirements = dest / "requirements.txt"
    if requirements.is_file():
        kept = [line for line in requirements.read_text().splitlines()
                if not line.strip().lower().startswith("clarifai")]
        requirements.write_text("\n".join(["# clarifai: not needed, jupyter_deploy serves the model", *kept]) + "\n")
