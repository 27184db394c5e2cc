"""Method signatures: call shapes, refusals, and the description that travels to clients."""

import collections.abc
import dataclasses
import inspect
import typing
from typing import Any, AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Optional

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from PIL import Image

from jupyter_deploy.errors import ModelDefinitionError
from jupyter_deploy.model import Audio, Concept, Frame, ModelClass, Region, Video
from jupyter_deploy.model.codec import decoder
from jupyter_deploy.model.signature import (
    BIDI,
    ROUTING_KEYWORDS,
    SERVER_STREAM,
    UNARY,
    MethodSpec,
    TypeNode,
    describe_method,
    method_from_proto,
    method_to_proto,
    to_annotation,
    type_from_proto,
    type_node,
    type_to_proto,
    with_classes,
)
from jupyter_deploy.proto import runner_pb2 as pb


def spec_of(func: Any) -> MethodSpec:
    return describe_method(func.__name__, func)


def over_the_wire(spec: MethodSpec) -> MethodSpec:
    wire = method_to_proto(spec).SerializeToString()
    return method_from_proto(pb.MethodDescription.FromString(wire))


# ------------------------------------------------------------------ call shapes


def unary(self, x: str) -> str: ...
def typing_iterator(self, x: str) -> Iterator[str]: yield x
def abc_iterator(self, x: str) -> collections.abc.Iterator[str]: yield x
def typing_iterable(self, x: str) -> Iterable[int]: return iter([1])
def typing_generator(self, x: str) -> Generator[int, None, None]: yield 1
def abc_generator(self, x: str) -> collections.abc.Generator[int, None, None]: yield 1
def bidi_typing(self, xs: Iterator[str], k: int = 1) -> Iterator[str]: yield from xs
def bidi_abc(self, xs: collections.abc.Iterable[bytes]) -> collections.abc.Iterator[bytes]:
    yield from xs
async def async_unary(self, x: str) -> str: return x
async def async_gen(self, x: str) -> AsyncIterator[str]: yield x
async def async_gen_abc(self, x: str) -> collections.abc.AsyncGenerator[str, None]: yield x
async def async_generator(self, x: str) -> AsyncGenerator[int, None]: yield 1
async def async_bidi(self, xs: AsyncIterator[str]) -> AsyncIterator[str]:
    async for x in xs:
        yield x


@pytest.mark.parametrize("func, shape, is_async, returns", [
    (unary, UNARY, False, "str"),
    (typing_iterator, SERVER_STREAM, False, "str"),
    (abc_iterator, SERVER_STREAM, False, "str"),
    (typing_iterable, SERVER_STREAM, False, "int"),
    (typing_generator, SERVER_STREAM, False, "int"),
    (abc_generator, SERVER_STREAM, False, "int"),
    (bidi_typing, BIDI, False, "str"),
    (bidi_abc, BIDI, False, "bytes"),
    (async_unary, UNARY, True, "str"),
    (async_gen, SERVER_STREAM, True, "str"),
    (async_gen_abc, SERVER_STREAM, True, "str"),
    (async_generator, SERVER_STREAM, True, "int"),
    (async_bidi, BIDI, True, "str"),
])
def test_the_call_shape_follows_from_the_hints(func: Any, shape: str, is_async: bool,
                                               returns: str) -> None:
    spec = spec_of(func)
    assert (spec.shape, spec.is_async, spec.returns.kind) == (shape, is_async, returns)
    stream = spec.stream_param
    if shape == BIDI:
        assert stream is not None and stream.name == "xs" and stream.type.kind in ("str", "bytes")
        assert [p.stream for p in spec.params] == [True] + [False] * (len(spec.params) - 1)
    else:
        assert stream is None


def test_parameters_keep_order_defaults_and_keyword_only() -> None:
    def f(self, text: str, n: int = 3, *, temp: float = 0.5,
          stop: Optional[list[str]] = None) -> str: ...

    spec = spec_of(f)
    assert [(p.name, str(p.type), p.default, p.keyword_only) for p in spec.params] == [
        ("text", "str", inspect.Parameter.empty, False), ("n", "int", 3, False),
        ("temp", "float", 0.5, True), ("stop", "Optional[list[str]]", None, True)]
    assert spec.signature_text == (
        "(text: str, n: int = 3, *, temp: float = 0.5, stop: Optional[list[str]] = None) -> str")
    assert str(spec.signature()) == str(inspect.signature(f).replace(
        parameters=list(inspect.signature(f).parameters.values())[1:]))


# ------------------------------------------------------------------ refusals


def test_a_routing_keyword_is_refused_when_decorating() -> None:
    for name in sorted(ROUTING_KEYWORDS):
        source = f"def f(self, x: str, {name}: str = '') -> str: ...\nModelClass.method(f)"
        with pytest.raises(ModelDefinitionError,
                           match=f"parameter '{name}': '{name}' is a routing keyword"):
            exec(source, {"ModelClass": ModelClass})
    with pytest.raises(ModelDefinitionError, match="'nodepool_id' is a routing keyword"):
        class M(ModelClass):
            @ModelClass.method()
            def predict(self, x: str, *, nodepool_id: str = "") -> str: ...


def refused(func: Any, message: str) -> None:
    with pytest.raises(ModelDefinitionError) as e:
        spec_of(func)
    assert message in str(e.value)


class NotData:
    pass


@dataclasses.dataclass
class WithStream:
    items: Iterator[int]


@pytest.mark.parametrize("ann, message", [
    (set[int], "unsupported type set[int]"),
    (tuple, "unsupported type <class 'tuple'>"),
    (tuple[int, int], "unsupported type tuple[int, int]"),
    (complex, "unsupported type <class 'complex'>"),
    (NotData, "unsupported type"),
    (dict[int, str], "dict keys must be str"),
    (typing.Union[int, str], "unions other than Optional[T] are not supported"),
    (int | str | None, "unions other than Optional[T] are not supported"),
    (Iterator, "needs an item type"),
    (collections.abc.Iterator, "needs an item type"),
    (list[Iterator[int]], "an Iterator can only be a whole parameter or the return type"),
    (WithStream, "field 'items': an Iterator cannot be a field"),
])
def test_unsupported_parameter_types_are_refused(ann: Any, message: str) -> None:
    def f(self, x: ann) -> str: ...  # type: ignore[valid-type]

    with pytest.raises(ModelDefinitionError) as e:
        spec_of(f)
    assert str(e.value).startswith("f() parameter 'x'") and message in str(e.value)
    assert "supported: str, bytes" in str(e.value) or "unsupported" not in message


def test_unannotated_and_variadic_parameters_are_refused() -> None:
    def no_param_annotation(self, x) -> str: ...
    def no_return_annotation(self, x: str): ...
    def star_args(self, *xs: str) -> str: ...
    def star_kwargs(self, **kw: str) -> str: ...
    def positional_only(self, x: str, /) -> str: ...

    refused(no_param_annotation, "no_param_annotation() parameter 'x': no type annotation")
    refused(no_return_annotation, "no_return_annotation(): no return annotation")
    refused(star_args, "star_args() parameter 'xs': *args and **kwargs cannot be served")
    refused(star_kwargs, "star_kwargs() parameter 'kw': *args and **kwargs cannot be served")
    refused(positional_only, "positional_only() parameter 'x': positional-only parameters")


def test_inconsistent_streaming_is_refused() -> None:
    def gen_plain(self, x: str) -> str:
        yield x

    async def async_gen_plain(self, x: str) -> list[str]:
        yield [x]

    async def coroutine_iter(self, x: str) -> Iterator[str]: ...
    def two_streams(self, a: Iterator[str], b: Iterator[str]) -> Iterator[str]: ...
    def stream_in_unary_out(self, a: Iterator[str]) -> str: ...

    refused(gen_plain, "gen_plain(): is a generator but its return annotation is <class 'str'>; "
                       "annotate it as Iterator[str]")
    refused(async_gen_plain, "async_gen_plain(): is a generator")
    refused(coroutine_iter, "an async method that streams must be an async generator")
    refused(two_streams, "at most one Iterator parameter is allowed, got a, b")
    refused(stream_in_unary_out, "takes an Iterator input, so it must return Iterator[...]")


def test_a_default_that_does_not_fit_its_type_is_refused() -> None:
    class BadInt(ModelClass):
        @ModelClass.method
        def predict(self, n: int = "three") -> str: ...  # type: ignore[assignment]

    class BadItem(ModelClass):
        @ModelClass.method
        def predict(self, xs: list[int] = [1, "b"]) -> str: ...  # type: ignore[list-item]  # noqa: B006

    class BadDict(ModelClass):
        @ModelClass.method
        def predict(self, d: dict = None) -> str: ...  # type: ignore[assignment]

    with pytest.raises(ModelDefinitionError,
                       match="predict\\(\\) default of 'n': expected int, got str 'three'"):
        BadInt.method_specs()
    with pytest.raises(ModelDefinitionError,
                       match="predict\\(\\) default of 'xs\\[1\\]': expected int, got str 'b'"):
        BadItem.method_specs()
    with pytest.raises(ModelDefinitionError, match="default of 'd': expected dict, got NoneType None"):
        BadDict.method_specs()


def test_a_class_without_methods_is_refused() -> None:
    class Empty(ModelClass):
        def predict(self, x: str) -> str: ...

    with pytest.raises(ModelDefinitionError, match="Empty has no @ModelClass.method"):
        Empty.method_specs()


# ------------------------------------------------------------------ the description that travels


@dataclasses.dataclass
class Detection:
    label: str
    score: float
    boxes: list[Region]


@dataclasses.dataclass
class Result:
    text: str
    detections: list[Detection]
    mask: Optional[np.ndarray]


class Everything(ModelClass):
    """A model with one method of each kind."""

    @ModelClass.method
    def predict(self, text: str, data: bytes = b"\x00", n: int = -3, t: float = 0.25, flag: bool = True,
                maybe: Optional[int] = None, tags: list[str] = ["a", "b"],  # noqa: B006
                weights: dict[str, float] = {"w": 1.5}, meta: dict = {"k": [1, None]},  # noqa: B006
                items: list = [1, "x"], *, img: Optional[Image.Image] = None,  # noqa: B006
                arr: Optional[np.ndarray] = None, df: Optional[pd.DataFrame] = None,
                concept: Concept = Concept("c", "C", 0.5), region: Optional[Region] = None,
                frame: Optional[Frame] = None, audio: Optional[Audio] = None,
                video: Optional[Video] = None, anything: Any = 7) -> Result:
        """Predict everything.

        Returns a Result.
        """

    @ModelClass.method
    def generate(self, prompt: str, max_tokens: int = 16) -> Iterator[str]:
        """Stream tokens."""
        yield prompt

    @ModelClass.method
    async def stream(self, chunks: AsyncIterator[Audio],
                     language: str = "en") -> AsyncIterator[list[Concept]]:
        yield []


SPECS = Everything.method_specs()


def test_every_method_is_described() -> None:
    assert list(SPECS) == ["predict", "generate", "stream"]
    assert [s.shape for s in SPECS.values()] == [UNARY, SERVER_STREAM, BIDI]
    assert SPECS["stream"].is_async and not SPECS["predict"].is_async


@pytest.mark.parametrize("name", ["predict", "generate", "stream"])
def test_a_method_description_rebuilds_the_same_signature(name: str) -> None:
    spec = SPECS[name]
    rebuilt = over_the_wire(spec)
    assert (rebuilt.name, rebuilt.shape, rebuilt.is_async, rebuilt.doc) == (
        spec.name, spec.shape, spec.is_async, spec.doc)
    assert rebuilt.returns == spec.returns and rebuilt.params == spec.params
    assert rebuilt.signature_text == spec.signature_text
    sig, got = spec.signature(), rebuilt.signature()
    # The one difference: a rebuilt dataclass lives in no module of its own.
    assert (str(got).replace("types.Result", "Result")
            == str(sig).replace(f"{__name__}.Result", "Result"))
    for want, have in zip(sig.parameters.values(), got.parameters.values()):
        assert (have.name, have.kind) == (want.name, want.kind)
        assert have.default == want.default and type(have.default) is type(want.default)
        assert have.annotation == want.annotation
    if name != "predict":
        assert got.return_annotation == sig.return_annotation


def test_the_signature_matches_the_model_method() -> None:
    sig = inspect.signature(Everything.generate)
    want = sig.replace(parameters=list(sig.parameters.values())[1:],
                       return_annotation=collections.abc.Iterator[str])
    assert str(over_the_wire(SPECS["generate"]).signature()) == str(want)


def test_docstrings_and_defaults_travel() -> None:
    rebuilt = over_the_wire(SPECS["predict"])
    assert rebuilt.doc == "Predict everything.\n\nReturns a Result."
    defaults = {p.name: p.default for p in rebuilt.params}
    assert defaults["data"] == b"\x00" and defaults["n"] == -3 and defaults["t"] == 0.25
    assert defaults["flag"] is True and defaults["maybe"] is None
    assert defaults["tags"] == ["a", "b"] and defaults["weights"] == {"w": 1.5}
    assert defaults["meta"] == {"k": [1, None]} and defaults["items"] == [1, "x"]
    assert defaults["concept"] == Concept("c", "C", 0.5) and defaults["anything"] == 7
    assert inspect.Parameter.empty is defaults["text"]
    assert [p.name for p in rebuilt.params if p.keyword_only][0] == "img"


def test_a_dataclass_return_is_rebuilt_with_its_name_and_fields() -> None:
    rebuilt = over_the_wire(SPECS["predict"])
    cls = rebuilt.signature().return_annotation
    assert dataclasses.is_dataclass(cls) and cls is not Result and cls.__name__ == "Result"
    text, detections, mask = dataclasses.fields(cls)
    assert (text.name, text.type, mask.name, mask.type) == ("text", str, "mask", Optional[np.ndarray])
    assert detections.name == "detections" and typing.get_origin(detections.type) is list
    inner = typing.get_args(detections.type)[0]
    assert dataclasses.is_dataclass(inner) and inner.__name__ == "Detection"
    assert [(f.name, f.type) for f in dataclasses.fields(inner)] == [
        ("label", str), ("score", float), ("boxes", list[Region])]
    # The same description gives the same class again, so isinstance keeps working.
    assert over_the_wire(SPECS["predict"]).signature().return_annotation is cls


def test_with_classes_binds_every_dataclass() -> None:
    msg = type_to_proto(type_node(list[Result], "r")).SerializeToString()
    wire = type_from_proto(pb.Type.FromString(msg))
    assert wire.args[0].py is None
    with pytest.raises(ValueError, match="call signature.with_classes first"):
        decoder(wire)
    bound = with_classes(wire)
    assert bound == wire  # the classes do not change what the type is
    result = bound.args[0]
    assert result.py is not None and result.py.__name__ == "Result"
    detection = dict(result.fields)["detections"].args[0]
    assert detection.py is not None and detection.py.__name__ == "Detection"
    assert with_classes(wire).args[0].py is result.py
    local = type_node(Result, "r")
    assert with_classes(local) is local and with_classes(local).py is Result


# ------------------------------------------------------------------ every annotation survives the trip


leaf_annotations = st.sampled_from([str, bytes, int, float, bool, dict, list, Any, Image.Image,
                                    np.ndarray, pd.DataFrame, Concept, Region, Frame, Audio, Video,
                                    Result])
annotations = st.recursive(
    leaf_annotations,
    lambda inner: inner.map(lambda a: list[a]) | inner.map(lambda a: dict[str, a])
    | inner.map(lambda a: Optional[a] if a is not Any else list[a]),
    max_leaves=4)


@settings(max_examples=60, deadline=None)
@given(annotations)
def test_every_supported_annotation_survives_the_wire(ann: Any) -> None:
    node = type_node(ann, "x")
    assert isinstance(node, TypeNode)
    wire = with_classes(type_from_proto(pb.Type.FromString(type_to_proto(node).SerializeToString())))
    assert wire == node and str(wire) == str(node)
    assert to_annotation(node) == ann
    assert type_node(to_annotation(wire), "x") == node
    if "Result" not in str(node):  # a dataclass comes back as a rebuilt class of the same shape
        assert to_annotation(wire) == ann


def test_numpy_typing_spellings_are_arrays() -> None:
    import numpy.typing as npt

    assert type_node(npt.NDArray[np.float32], "x") == TypeNode("ndarray")
    assert type_node(np.ndarray[Any, np.dtype[np.int8]], "x") == TypeNode("ndarray")


def test_type_names_read_as_python() -> None:
    assert str(type_node(dict[str, Optional[list[float]]], "x")) == "dict[str, Optional[list[float]]]"
    anns = (Image.Image, np.ndarray, pd.DataFrame, dict, list, Any, None)
    assert [str(type_node(a, "x")) for a in anns] == [
        "PIL.Image.Image", "numpy.ndarray", "pandas.DataFrame", "dict", "list", "JSON", "None"]
    assert str(type_node(Result, "x")) == "Result" and str(type_node(Concept, "x")) == "Concept"
