"""Read a model method's signature into a description that travels.

A ``MethodSpec`` is built from the type hints of a ``@ModelClass.method`` in
the model's own process, sent over the protocol (``to_proto``/``from_proto``),
and rebuilt on any client into the same ``inspect.Signature`` (``signature``),
so ``help()`` and tab completion work on a machine that never imported the
model.

The call shape follows from the hints alone::

    def predict(self, x: str) -> str                       # unary
    def generate(self, x: str) -> Iterator[str]             # server streaming
    def stream(self, xs: Iterator[str], k: int = 1) -> Iterator[str]   # bidirectional

A batchable method (``@ModelClass.method(batch=True)``) is described by its
element types: ``predict(self, x: list[int]) -> list[int]`` becomes the spec of
``predict(x: int) -> int`` with ``batch=True``, since that is how callers call it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .._lazy import LazyModule
from ..errors import ModelDefinitionError
from . import types as dtypes

if TYPE_CHECKING:
    from ..proto import runner_pb2 as pb
else:  # protobuf only when a signature crosses the wire, not at `import jupyter_deploy`
    pb = LazyModule("jupyter_deploy.proto.runner_pb2", globals(), "pb")

#: Keywords the client uses to route a call; a model parameter may not take them.
ROUTING_KEYWORDS = frozenset({"deployment_id", "compute_cluster_id", "nodepool_id"})

UNARY, SERVER_STREAM, BIDI = "unary", "server_stream", "bidi"

_SCALARS = {str: "str", bytes: "bytes", int: "int", float: "float", bool: "bool", type(None): "none"}
_DATA_TYPES = {
    dtypes.Concept: "concept",
    dtypes.Region: "region",
    dtypes.Frame: "frame",
    dtypes.Audio: "audio",
    dtypes.Video: "video",
}
_ITERATORS = {
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
}
SUPPORTED = (
    "str, bytes, int, float, bool, None, Optional[T], list[T], dict[str, T], bare dict/list "
    "(JSON-like), PIL.Image.Image, numpy.ndarray, pandas.DataFrame, Concept, Region, Frame, "
    "Audio, Video, or a dataclass of these"
)


@dataclass(frozen=True)
class TypeNode:
    """One declared type, as a small tree (``list[int]`` is ``list(int)``)."""

    kind: str
    args: tuple["TypeNode", ...] = ()
    name: str = ""  # a dataclass's name; for kind "json" which bare type: dict, list or any
    fields: tuple[tuple[str, "TypeNode"], ...] = ()
    py: Any = field(default=None, compare=False, repr=False)  # the dataclass, where known

    def __str__(self) -> str:
        if self.kind in ("list", "dict", "optional", "iterator"):
            inner = ", ".join(str(a) for a in self.args)
            return {"list": f"list[{inner}]", "dict": f"dict[str, {inner}]",
                    "optional": f"Optional[{inner}]", "iterator": f"Iterator[{inner}]"}[self.kind]
        if self.kind == "json":
            return {"dict": "dict", "list": "list"}.get(self.name, "JSON")
        if self.kind == "dataclass":
            return self.name
        return {"image": "PIL.Image.Image", "ndarray": "numpy.ndarray",
                "dataframe": "pandas.DataFrame", "none": "None"}.get(
            self.kind, self.kind if self.kind in _SCALARS.values() else self.kind.capitalize())


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: TypeNode  # for the stream parameter, the item type
    default: Any = inspect.Parameter.empty
    keyword_only: bool = False
    stream: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not inspect.Parameter.empty


@dataclass(frozen=True)
class MethodSpec:
    """What a client needs to call one model method."""

    name: str
    shape: str  # UNARY, SERVER_STREAM or BIDI
    params: tuple[ParamSpec, ...]
    returns: TypeNode  # for streaming methods, the item type
    doc: str = ""
    is_async: bool = False
    #: Declared ``batch=True``: the model takes lists of these params and returns a list.
    #: Only the serving process needs it, so it is not part of the wire form.
    batch: bool = False
    #: ``"chat"`` or ``"completion"``: the OpenAI-compatible endpoint the method serves (declared with
    #: ``@ModelClass.method(openai=...)``), else empty.
    openai: str = ""

    @property
    def stream_param(self) -> ParamSpec | None:
        return next((p for p in self.params if p.stream), None)

    @property
    def signature_text(self) -> str:
        """A short form for tables: ``(text: str, n: int = 3) -> Iterator[str]``."""
        params = []
        for p in self.params:
            text = f"{p.name}: {f'Iterator[{p.type}]' if p.stream else p.type}"
            params.append(text + (f" = {p.default!r}" if p.has_default else ""))
        if any(p.keyword_only for p in self.params):
            first_kw = next(i for i, p in enumerate(self.params) if p.keyword_only)
            params.insert(first_kw, "*")
        ret = f"Iterator[{self.returns}]" if self.shape != UNARY else str(self.returns)
        return f"({', '.join(params)}) -> {ret}"

    def signature(self) -> inspect.Signature:
        """The method's signature as the model declared it, without ``self``."""
        params = []
        for p in self.params:
            ann = to_annotation(p.type)
            if p.stream:
                ann = collections.abc.Iterator[ann]
            kind = (inspect.Parameter.KEYWORD_ONLY if p.keyword_only
                    else inspect.Parameter.POSITIONAL_OR_KEYWORD)
            params.append(inspect.Parameter(p.name, kind, default=p.default, annotation=ann))
        ret = to_annotation(self.returns)
        if self.shape != UNARY:
            ret = collections.abc.Iterator[ret]
        return inspect.Signature(params, return_annotation=ret)


# ------------------------------------------------------------ annotations -> nodes


def _is_class(ann: Any, module: str, name: str) -> bool:
    # Compare by name so that reading a signature never imports Pillow or pandas.
    return (isinstance(ann, type) and ann.__name__ == name
            and getattr(ann, "__module__", "").split(".")[0] == module.split(".")[0]
            and getattr(ann, "__module__", "").startswith(module))


def type_node(ann: Any, where: str) -> TypeNode:
    """Turn one annotation into a TypeNode, or raise ModelDefinitionError naming ``where``."""
    if ann is None:
        ann = type(None)
    if ann in _SCALARS:
        return TypeNode(_SCALARS[ann])
    if ann is dict or ann is list or ann is typing.Any:
        return TypeNode("json", name={dict: "dict", list: "list"}.get(ann, "any"))
    if ann in _DATA_TYPES:
        return TypeNode(_DATA_TYPES[ann], py=ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return TypeNode("optional", (type_node(rest[0], where),))
        raise ModelDefinitionError(f"{where}: unions other than Optional[T] are not supported, got {ann}")
    if origin is list:
        return TypeNode("list", (type_node(args[0], where),)) if args else TypeNode("json", name="list")
    if origin is dict:
        if args and args[0] is not str:
            raise ModelDefinitionError(f"{where}: dict keys must be str, got {ann}")
        return TypeNode("dict", (type_node(args[1], where),)) if args else TypeNode("json", name="dict")
    if origin in _ITERATORS:
        if not args:
            raise ModelDefinitionError(f"{where}: {ann} needs an item type, e.g. Iterator[str]")
        return TypeNode("iterator", (type_node(args[0], where),))
    if ann in _ITERATORS or ann in (typing.Iterator, typing.Generator, typing.AsyncIterator):
        raise ModelDefinitionError(f"{where}: {ann} needs an item type, e.g. Iterator[str]")
    if _is_class(ann, "PIL.Image", "Image"):
        return TypeNode("image")
    if _is_class(ann, "numpy", "ndarray") or _is_class(origin, "numpy", "ndarray"):
        return TypeNode("ndarray")
    if _is_class(ann, "pandas", "DataFrame"):
        return TypeNode("dataframe")
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        try:
            hints = typing.get_type_hints(ann)
        except Exception as e:
            raise ModelDefinitionError(f"{where}: cannot resolve the fields of {ann.__name__}: {e}") from e
        fields_ = tuple((f.name, type_node(hints[f.name], f"{where} field '{f.name}'"))
                        for f in dataclasses.fields(ann))
        for fname, node in fields_:
            if node.kind == "iterator":
                raise ModelDefinitionError(f"{where} field '{fname}': an Iterator cannot be a field")
        return TypeNode("dataclass", name=ann.__name__, fields=fields_, py=ann)
    raise ModelDefinitionError(f"{where}: unsupported type {ann!r} (supported: {SUPPORTED})")


def describe_method(name: str, func: Any) -> MethodSpec:
    """Build the MethodSpec of ``func`` (a function whose first parameter is ``self``).

    Example::

        >>> class M(ModelClass):
        ...     @ModelClass.method
        ...     def predict(self, x: int = 1) -> str: ...
        >>> describe_method("predict", M.predict).signature()
        <Signature (x: int = 1) -> str>
    """
    where = f"{name}()"
    try:
        hints = typing.get_type_hints(func)
    except Exception as e:
        raise ModelDefinitionError(f"{where}: cannot resolve its type hints: {e}") from e
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1:]  # self
    is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
    is_gen = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)

    specs = []
    for p in params:
        pwhere = f"{where} parameter '{p.name}'"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ModelDefinitionError(f"{pwhere}: *args and **kwargs cannot be served; name each parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise ModelDefinitionError(f"{pwhere}: positional-only parameters cannot be called by name; remove the '/'")
        if p.name in ROUTING_KEYWORDS:
            raise ModelDefinitionError(
                f"{pwhere}: '{p.name}' is a routing keyword of the client "
                f"({', '.join(sorted(ROUTING_KEYWORDS))}); rename the parameter")
        if p.name not in hints:
            raise ModelDefinitionError(f"{pwhere}: no type annotation; annotate it, e.g. {p.name}: str")
        node = type_node(hints[p.name], pwhere)
        stream = node.kind == "iterator"
        if stream:
            node = node.args[0]
        _no_nested_iterator(node, pwhere)
        specs.append(ParamSpec(p.name, node, p.default, p.kind is p.KEYWORD_ONLY, stream))

    if "return" not in hints:
        raise ModelDefinitionError(f"{where}: no return annotation; add one, e.g. -> str or -> Iterator[str]")
    ret = type_node(hints["return"], f"{where} return")
    streams_out = ret.kind == "iterator"
    if streams_out:
        ret = ret.args[0]
    _no_nested_iterator(ret, f"{where} return")
    if is_gen and not streams_out:
        raise ModelDefinitionError(
            f"{where}: is a generator but its return annotation is {hints['return']!r}; "
            f"annotate it as Iterator[{ret}]")
    if inspect.iscoroutinefunction(func) and streams_out:
        raise ModelDefinitionError(
            f"{where}: an async method that streams must be an async generator (use yield)")

    stream_params = [p for p in specs if p.stream]
    if len(stream_params) > 1:
        raise ModelDefinitionError(f"{where}: at most one Iterator parameter is allowed, got "
                                   f"{', '.join(p.name for p in stream_params)}")
    if stream_params and not streams_out:
        raise ModelDefinitionError(
            f"{where}: takes an Iterator input, so it must return Iterator[...] (bidirectional streaming)")
    shape = BIDI if stream_params else SERVER_STREAM if streams_out else UNARY
    batch = bool(getattr(func, "__jupyter_deploy_batch__", False))
    if batch:
        specs, ret = _batch_elements(where, shape, specs, ret)
    openai = getattr(func, "__jupyter_deploy_openai__", "") or ""
    if openai:
        _check_openai(where, openai, shape, specs, ret)
    return MethodSpec(name, shape, tuple(specs), ret, inspect.getdoc(func) or "", is_async, batch, openai)


#: What a method that serves an OpenAI-compatible endpoint takes: chat, a list of messages;
#: completion, a prompt.
OPENAI_INPUT = {"chat": "messages", "completion": "prompt"}


def _check_openai(where: str, openai: str, shape: str, params: list[ParamSpec], ret: TypeNode) -> None:
    """A method declared ``openai="chat"|"completion"`` must take ``messages`` (a list of dicts) or
    ``prompt: str``, and return ``str`` or ``Iterator[str]``."""
    name = OPENAI_INPUT[openai]
    param = next((p for p in params if p.name == name), None)
    if param is None or param.stream:
        raise ModelDefinitionError(f"{where} (openai={openai!r}): needs a parameter '{name}' "
                                   + ("(messages: list[dict])" if openai == "chat" else "(prompt: str)"))
    if openai == "completion" and param.type.kind != "str":
        raise ModelDefinitionError(f"{where} (openai='completion'): parameter 'prompt' must be str, "
                                   f"got {param.type}")
    if openai == "chat" and not (param.type.kind == "list" or param.type.kind == "json" and param.type.name != "dict"):
        raise ModelDefinitionError(f"{where} (openai='chat'): parameter 'messages' must be a list "
                                   f"(list[dict]), got {param.type}")
    if shape == BIDI or ret.kind != "str":
        raise ModelDefinitionError(f"{where} (openai={openai!r}): must return str or Iterator[str]")


def _batch_elements(where: str, shape: str, params: list[ParamSpec],
                    ret: TypeNode) -> tuple[list[ParamSpec], TypeNode]:
    """The element view of a batchable method: each ``list[T]`` parameter as ``T``, the return too."""
    where = f"{where} (batch=True)"
    if shape != UNARY:
        raise ModelDefinitionError(f"{where}: a batchable method must be unary (no Iterator parameter "
                                   "or return); it takes lists and returns a list")
    if not params:
        raise ModelDefinitionError(f"{where}: a batchable method needs at least one list[T] parameter")
    out = []
    for p in params:
        if p.type.kind != "list":
            raise ModelDefinitionError(f"{where} parameter '{p.name}': must be list[T] (one T per call in "
                                       f"the batch), got {p.type}")
        if p.has_default:
            raise ModelDefinitionError(f"{where} parameter '{p.name}': a batchable method's parameters "
                                       "cannot have defaults (every call gives each of them)")
        out.append(dataclasses.replace(p, type=p.type.args[0]))
    if ret.kind != "list":
        raise ModelDefinitionError(f"{where} return: must be list[T] (one result per call, in order), "
                                   f"got {ret}")
    return out, ret.args[0]


def _no_nested_iterator(node: TypeNode, where: str) -> None:
    for arg in node.args:
        if arg.kind == "iterator":
            raise ModelDefinitionError(f"{where}: an Iterator can only be a whole parameter or the return type")
        _no_nested_iterator(arg, where)


# ------------------------------------------------------------ nodes -> annotations


def to_annotation(node: TypeNode) -> Any:
    """The Python annotation a TypeNode stands for (imports Pillow/numpy/pandas if needed)."""
    k = node.kind
    if k in ("str", "bytes", "int", "float", "bool"):
        return {"str": str, "bytes": bytes, "int": int, "float": float, "bool": bool}[k]
    if k == "none":
        return None
    if k == "optional":
        return typing.Optional[to_annotation(node.args[0])]
    if k == "list":
        return list[to_annotation(node.args[0])]
    if k == "dict":
        return dict[str, to_annotation(node.args[0])]
    if k == "json":
        return {"dict": dict, "list": list}.get(node.name, typing.Any)
    if k == "iterator":
        return collections.abc.Iterator[to_annotation(node.args[0])]
    if k == "image":
        from PIL import Image
        return Image.Image
    if k == "ndarray":
        import numpy
        return numpy.ndarray
    if k == "dataframe":
        import pandas
        return pandas.DataFrame
    if k in _DATA_TYPES.values():
        return {v: t for t, v in _DATA_TYPES.items()}[k]
    if k == "dataclass":
        return node.py if node.py is not None else _rebuilt_dataclass(node)
    raise ValueError(f"unknown type kind {k!r}")


@lru_cache(maxsize=256)
def _rebuilt_dataclass(node: TypeNode) -> type:
    return dataclasses.make_dataclass(node.name, [(n, to_annotation(t)) for n, t in node.fields])


def with_classes(node: TypeNode) -> TypeNode:
    """``node`` with every dataclass bound to a Python class (rebuilt ones from the wire)."""
    if node.kind == "dataclass" and node.py is None:
        fields_ = tuple((n, with_classes(t)) for n, t in node.fields)
        return dataclasses.replace(node, fields=fields_, py=_rebuilt_dataclass(node))
    if node.args:
        return dataclasses.replace(node, args=tuple(with_classes(a) for a in node.args))
    return node


# ------------------------------------------------------------ wire form


def type_to_proto(node: TypeNode) -> pb.Type:
    return pb.Type(kind=node.kind, args=[type_to_proto(a) for a in node.args], name=node.name,
                   fields=[pb.Field(name=n, type=type_to_proto(t)) for n, t in node.fields])


def type_from_proto(msg: pb.Type) -> TypeNode:
    return TypeNode(msg.kind, tuple(type_from_proto(a) for a in msg.args), msg.name,
                    tuple((f.name, type_from_proto(f.type)) for f in msg.fields))


def method_to_proto(spec: MethodSpec) -> pb.MethodDescription:
    from .codec import encoder  # the codec builds on this module

    params = []
    for p in spec.params:
        msg = pb.Parameter(name=p.name, type=type_to_proto(p.type), has_default=p.has_default,
                           keyword_only=p.keyword_only, stream=p.stream)
        if p.has_default:
            msg.default.CopyFrom(encoder(p.type)(p.default))
        params.append(msg)
    return pb.MethodDescription(name=spec.name, shape=spec.shape, parameters=params,
                                returns=type_to_proto(spec.returns), doc=spec.doc,
                                is_async=spec.is_async, openai=spec.openai)


def method_from_proto(msg: pb.MethodDescription) -> MethodSpec:
    from .codec import decoder

    params = []
    for p in msg.parameters:
        node = with_classes(type_from_proto(p.type))
        default = decoder(node)(p.default) if p.has_default else inspect.Parameter.empty
        params.append(ParamSpec(p.name, node, default, p.keyword_only, p.stream))
    return MethodSpec(msg.name, msg.shape, tuple(params), with_classes(type_from_proto(msg.returns)),
                      msg.doc, msg.is_async, openai=msg.openai)
