"""The codec: every supported type round-trips exactly; wrong values get clear errors."""

import dataclasses
import io
import math
import pathlib
import struct
from typing import Any, Optional

import hypothesis.extra.numpy as hnp
import hypothesis.extra.pandas as hpd
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from pandas.testing import assert_frame_equal
from PIL import Image

from jupyter_deploy.errors import InputError
from jupyter_deploy.model import Audio, Concept, Frame, ModelClass, Region, Video
from jupyter_deploy.model.codec import (
    decode_args,
    decode_value,
    decoder,
    encode_args,
    encode_value,
    encoder,
)
from jupyter_deploy.model.signature import (
    TypeNode,
    type_from_proto,
    type_node,
    type_to_proto,
    with_classes,
)
from jupyter_deploy.proto import runner_pb2 as pb

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def node_of(ann: Any) -> TypeNode:
    return ann if isinstance(ann, TypeNode) else type_node(ann, "x")


def roundtrip(ann: Any, value: Any, media_refs: bool = False) -> Any:
    """encode -> bytes on the wire -> Value.FromString -> decode."""
    node = node_of(ann)
    wire = encoder(node, media_refs)(value).SerializeToString()
    return decoder(node)(pb.Value.FromString(wire))


def float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


# ------------------------------------------------------------------ scalars and containers


@SETTINGS
@given(st.text())
def test_str_round_trips(v: str) -> None:
    out = roundtrip(str, v)
    assert type(out) is str and out == v


@SETTINGS
@given(st.binary())
def test_bytes_round_trip(v: bytes) -> None:
    out = roundtrip(bytes, v)
    assert type(out) is bytes and out == v


@SETTINGS
@given(st.integers() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
       | st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30]))
def test_int_round_trips_including_beyond_int64(v: int) -> None:
    out = roundtrip(int, v)
    assert type(out) is int and out == v


@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float_round_trips_bit_for_bit(v: float) -> None:
    out = roundtrip(float, v)
    assert type(out) is float
    # NaN != NaN, and -0.0 == 0.0: compare the bits instead.
    assert float_bits(out) == float_bits(v) or (math.isnan(v) and math.isnan(out))


@SETTINGS
@given(st.booleans())
def test_bool_round_trips(v: bool) -> None:
    out = roundtrip(bool, v)
    assert type(out) is bool and out is v


def test_numpy_scalars_encode_as_python_numbers() -> None:
    assert roundtrip(int, np.int16(-7)) == -7
    assert roundtrip(int, np.uint64(2**64 - 1)) == 2**64 - 1
    assert roundtrip(float, np.float32(0.5)) == 0.5
    assert roundtrip(float, 3) == 3.0 and type(roundtrip(float, 3)) is float
    assert roundtrip(bool, np.bool_(True)) is True


@SETTINGS
@given(st.none() | st.integers())
def test_optional_round_trips(v: Optional[int]) -> None:
    assert roundtrip(Optional[int], v) == v
    assert roundtrip(int | None, v) == v


@SETTINGS
@given(st.lists(st.dictionaries(st.text(), st.none() | st.integers(), max_size=4), max_size=4))
def test_nested_list_and_dict_round_trip_with_key_order(v: list) -> None:
    out = roundtrip(list[dict[str, Optional[int]]], v)
    assert out == v
    assert [list(d) for d in out] == [list(d) for d in v]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@SETTINGS
@given(st.dictionaries(st.text(), json_values, max_size=5), st.lists(json_values, max_size=5))
def test_bare_dict_and_list_round_trip_as_json(d: dict, items: list) -> None:
    assert roundtrip(dict, d) == d
    assert list(roundtrip(dict, d)) == list(d)
    assert roundtrip(list, items) == items
    assert roundtrip(Any, d) == d


def test_json_keeps_bool_and_int_apart() -> None:
    out = roundtrip(dict, {"t": True, "one": 1, "f": 1.0, "big": 2**70})
    assert [type(v) for v in out.values()] == [bool, int, float, int]
    assert out["big"] == 2**70


# ------------------------------------------------------------------ numpy

ARRAY_DTYPES = (hnp.boolean_dtypes()
                | hnp.integer_dtypes(endianness="?")
                | hnp.unsigned_integer_dtypes(endianness="?")
                | hnp.floating_dtypes(sizes=(16, 32, 64), endianness="?")
                | hnp.complex_number_dtypes(sizes=(64, 128), endianness="?"))


@SETTINGS
@given(hnp.arrays(ARRAY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_ndarray_round_trips_dtype_shape_and_bytes(a: np.ndarray) -> None:
    out = roundtrip(np.ndarray, a)
    assert isinstance(out, np.ndarray)
    assert out.dtype == a.dtype and out.dtype.str == a.dtype.str
    assert out.shape == a.shape
    assert out.tobytes() == a.tobytes()  # NaNs and their payloads included
    out[...] = a  # decoded arrays are the model's own, not read-only views of the message


@SETTINGS
@given(hnp.arrays(np.int32, (4, 6)))
def test_non_contiguous_ndarray_is_sent_in_c_order(a: np.ndarray) -> None:
    view = a.T[::2]
    out = roundtrip(np.ndarray, view)
    assert out.shape == view.shape
    np.testing.assert_array_equal(out, view)


def test_zero_d_and_empty_arrays() -> None:
    zero_d = roundtrip(np.ndarray, np.array(2.5, dtype=np.float16))
    assert zero_d.shape == () and zero_d.dtype == np.float16 and zero_d[()] == 2.5
    empty = roundtrip(np.ndarray, np.zeros((3, 0, 2), dtype=np.complex64))
    assert empty.shape == (3, 0, 2) and empty.dtype == np.complex64


# ------------------------------------------------------------------ images

IMAGE_MODES = ["1", "L", "P", "RGB", "RGBA", "I", "F", "LA"]


@st.composite
def images(draw: Any) -> Image.Image:
    mode = draw(st.sampled_from(IMAGE_MODES))
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    nbytes = len(Image.new(mode, size).tobytes())
    img = Image.frombytes(mode, size, draw(st.binary(min_size=nbytes, max_size=nbytes)))
    if mode == "P":
        palette_mode = draw(st.sampled_from(["RGB", "RGBA"]))
        entries = draw(st.integers(1, 256))
        img.putpalette(draw(st.binary(min_size=entries * len(palette_mode),
                                      max_size=entries * len(palette_mode))), rawmode=palette_mode)
    return img


def assert_same_image(out: Any, img: Image.Image) -> None:
    assert isinstance(out, Image.Image)
    assert (out.mode, out.size) == (img.mode, img.size)
    assert out.tobytes() == img.tobytes()
    if img.mode == "P":
        assert out.palette.mode == img.palette.mode
        assert out.getpalette(img.palette.mode) == img.getpalette(img.palette.mode)


@SETTINGS
@given(images())
def test_image_round_trips_mode_size_pixels_and_palette(img: Image.Image) -> None:
    assert_same_image(roundtrip(Image.Image, img), img)


def test_zero_sized_image_round_trips() -> None:
    assert roundtrip(Image.Image, Image.new("RGB", (0, 3))).size == (0, 3)


# ------------------------------------------------------------------ data types

finite = st.floats(allow_nan=False)
concepts = st.builds(Concept, id=st.text(), name=st.text(), value=finite)
regions = st.builds(Region, box=st.tuples(finite, finite, finite, finite),
                    concepts=st.lists(concepts, max_size=3))


@SETTINGS
@given(concepts, regions, st.lists(regions, max_size=3))
def test_concepts_and_regions_round_trip(c: Concept, r: Region, rs: list) -> None:
    assert roundtrip(Concept, c) == c
    out = roundtrip(Region, r)
    assert out == r and isinstance(out.box, tuple)
    assert roundtrip(list[Region], rs) == rs


def test_a_concept_made_by_name_takes_its_name_as_id_and_a_region_takes_mappings() -> None:
    # Clarifai's Concept(name=..., value=...): no id given, the name is the id.
    c = Concept(name="cat", value=0.9)
    assert (c.id, c.name, c.value) == ("cat", "cat", 0.9)
    assert roundtrip(Concept, c) == c
    assert Concept("dog").id == "dog" and Concept(id="d", name="Dog").id == "d"
    r = Region((0, 0, 1, 1), concepts=[{"name": "cat", "value": 0.8}, Concept("dog")])
    assert r.concepts == [Concept(id="cat", name="cat", value=0.8), Concept("dog")]
    assert roundtrip(Region, r) == r


@SETTINGS
@given(images(), finite)
def test_frame_round_trips(img: Image.Image, time: float) -> None:
    out = roundtrip(Frame, Frame(img, time))
    assert isinstance(out, Frame) and out.time == time
    assert_same_image(out.image, img)


@SETTINGS
@given(st.binary(), st.text())
def test_audio_and_video_round_trip(data: bytes, mime: str) -> None:
    assert roundtrip(Audio, Audio(data, mime)) == Audio(data, mime)
    assert roundtrip(Video, Video(data, mime)) == Video(data, mime)
    assert type(roundtrip(Video, Video(data, mime))) is Video


@dataclasses.dataclass
class Box:
    label: str
    score: float


@dataclasses.dataclass
class Outputs:
    text: str
    count: int
    boxes: list[Box]
    scores: dict[str, float]
    best: Optional[Concept]
    audio: Audio


outputs = st.builds(Outputs, text=st.text(), count=st.integers(),
                    scores=st.dictionaries(st.text(), finite),
                    boxes=st.lists(st.builds(Box, label=st.text(), score=finite), max_size=3),
                    best=st.none() | concepts, audio=st.builds(Audio, st.binary(), st.text()))


@SETTINGS
@given(outputs)
def test_named_outputs_round_trip_as_the_dataclass(v: Outputs) -> None:
    out = roundtrip(Outputs, v)
    assert type(out) is Outputs and out == v
    assert all(type(b) is Box for b in out.boxes)


@SETTINGS
@given(outputs)
def test_named_outputs_decode_into_a_rebuilt_class_on_a_client(v: Outputs) -> None:
    wire_node = with_classes(type_from_proto(pb.Type.FromString(
        type_to_proto(type_node(Outputs, "x")).SerializeToString())))
    out = roundtrip(wire_node, v)
    assert type(out) is not Outputs and type(out).__name__ == "Outputs"
    assert [f.name for f in dataclasses.fields(out)] == [f.name for f in dataclasses.fields(Outputs)]
    assert dataclasses.asdict(out) == dataclasses.asdict(v)


def test_a_redefined_dataclass_decodes_into_the_new_class() -> None:
    # A notebook re-runs the cell that defines the class: same name, same fields.
    def define() -> type:
        @dataclasses.dataclass
        class Result:
            n: int
        return Result

    old, new = define(), define()
    assert type(roundtrip(list[old], [old(1)])[0]) is old
    assert type(roundtrip(list[new], [new(1)])[0]) is new
    assert type(roundtrip(new, new(2))) is new


# ------------------------------------------------------------------ pandas

NUMERIC_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64", "complex64", "complex128"]
UNITS = ["s", "ms", "us", "ns"]
TIME_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "+05:30"]
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def datetimes(n: int, unit: str, tz: Optional[str], nat: bool = True) -> st.SearchStrategy:
    bound = 3 * 10**9 * _PER_SECOND[unit]  # about 95 years either side of 1970
    ints = st.integers(-bound, bound) | (st.just(np.iinfo(np.int64).min) if nat else st.nothing())
    return st.lists(ints, min_size=n, max_size=n).map(
        lambda xs: _datetime_index(xs, unit, tz))


def _datetime_index(xs: list, unit: str, tz: Optional[str]) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(np.array(xs, dtype=np.int64).view(f"datetime64[{unit}]"))
    return idx.tz_localize("UTC").tz_convert(tz) if tz else idx


@st.composite
def extra_column(draw: Any, n: int) -> Any:
    """One column hypothesis.extra.pandas has no dtype for, as a Series of length n."""
    kind = draw(st.sampled_from(["object", "string", "datetime", "categorical"]))
    if kind == "object":
        return pd.Series(draw(st.lists(st.none() | st.text(), min_size=n, max_size=n)), dtype=object)
    if kind == "string":
        dtype = draw(st.sampled_from(["string", "str", pd.StringDtype("python")]))
        return pd.Series(draw(st.lists(st.none() | st.text(), min_size=n, max_size=n)), dtype=dtype)
    if kind == "datetime":
        tz = draw(st.none() | st.sampled_from(TIME_ZONES))
        return pd.Series(draw(datetimes(n, draw(st.sampled_from(UNITS)), tz)))
    categories = draw(st.lists(st.text(max_size=3), unique=True, max_size=5)
                      | st.lists(st.integers(-5, 5), unique=True, max_size=5))
    codes = draw(st.lists(st.integers(-1, len(categories) - 1), min_size=n, max_size=n))
    ordered = draw(st.booleans())
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories, ordered=ordered))


@st.composite
def indexes(draw: Any, n: int) -> pd.Index:
    name = draw(st.none() | st.text(max_size=5))
    kind = draw(st.sampled_from(["range", "stepped", "int", "str", "datetime"]))
    if kind == "range":
        return draw(hpd.range_indexes(min_size=n, max_size=n, name=st.just(name)))
    if kind == "stepped":
        start, step = draw(st.integers(-50, 50)), draw(st.integers(-5, 5).filter(bool))
        return pd.RangeIndex(start, start + n * step, step, name=name)
    if kind == "int":
        return draw(hpd.indexes(dtype=np.int64, min_size=n, max_size=n, name=st.just(name)))
    if kind == "str":
        return draw(hpd.indexes(elements=st.text(), min_size=n, max_size=n, name=st.just(name)))
    tz = draw(st.none() | st.sampled_from(TIME_ZONES))
    return draw(datetimes(n, draw(st.sampled_from(UNITS)), tz, nat=False)).rename(name)


@st.composite
def frames(draw: Any) -> pd.DataFrame:
    n = draw(st.integers(0, 5))
    index = draw(indexes(n))
    names = draw(st.lists(st.text(max_size=4), unique=True, max_size=6))
    numeric = names[: draw(st.integers(0, len(names)))]
    df = draw(hpd.data_frames(
        columns=[hpd.column(name, dtype=draw(st.sampled_from(NUMERIC_DTYPES))) for name in numeric],
        index=st.just(index)))
    for name in names[len(numeric):]:
        df[name] = draw(extra_column(len(index))).set_axis(index)
    return df


@settings(SETTINGS, max_examples=60)
@given(frames())
def test_dataframe_round_trips(df: pd.DataFrame) -> None:
    out = roundtrip(pd.DataFrame, df)
    assert_frame_equal(out, df, check_exact=True)
    assert list(out.dtypes) == list(df.dtypes)
    assert out.index.name == df.index.name


def test_dataframe_keeps_object_strings_object() -> None:
    # pandas 3 would infer its own str dtype from an object array of strings.
    index = pd.Index(["x", "y", "z"], dtype=object, name="k")
    df = pd.DataFrame({"o": pd.Series(["a", None, "c"], index=index, dtype=object)})
    df["c"] = pd.Categorical(["u", "v", "u"], categories=pd.Index(["u", "v"], dtype=object))
    out = roundtrip(pd.DataFrame, df)
    assert out["o"].dtype == object and out.index.dtype == object
    assert out["c"].cat.categories.dtype == object
    assert_frame_equal(out, df)


def test_dataframe_examples() -> None:
    cases = [
        pd.DataFrame(),
        pd.DataFrame(index=pd.RangeIndex(3)),
        pd.DataFrame(np.arange(6).reshape(2, 3)),
        pd.DataFrame({1: [1.5, np.nan], "b": ["x", "y"]}),  # mixed labels
        pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate labels
        pd.DataFrame({"t": pd.to_datetime(["2020-03-29 01:30", None]).tz_localize("Europe/Paris")}),
        pd.DataFrame({"v": [1, 2]}, index=pd.RangeIndex(10, 2, -4, name="r")),
        pd.DataFrame({"v": [1, 2]}, index=pd.CategoricalIndex(["p", "q"], ordered=True, name="c")),
    ]
    for df in cases:
        assert_frame_equal(roundtrip(pd.DataFrame, df), df)


# ------------------------------------------------------------------ errors, caller's side


class Typed(ModelClass):
    @ModelClass.method
    def predict(self, n: int, x: list[int], m: dict[str, float], out: Outputs, arr: np.ndarray,
                img: Image.Image, df: pd.DataFrame, flag: bool = False,
                c: Optional[Concept] = None) -> str:
        return ""

    @ModelClass.method
    def media(self, img: Image.Image, audio: Audio, video: Video, raw: bytes) -> str:
        return ""


SPEC = Typed.method_specs()["predict"]
MEDIA = Typed.method_specs()["media"]


def an_output(**changes: Any) -> Outputs:
    v = Outputs("t", 1, [Box("b", 0.5)], {"s": 1.0}, None, Audio(b"", "audio/wav"))
    return dataclasses.replace(v, **changes)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": "three"}, "predict() parameter 'n': expected int, got str 'three'"),
    ({"n": True}, "parameter 'n': expected int, got bool True"),
    ({"n": 1.5}, "parameter 'n': expected int, got float 1.5"),
    ({"flag": 1}, "parameter 'flag': expected bool, got int 1"),
    ({"x": [1, 2, "z"]}, "parameter 'x[2]': expected int, got str 'z'"),
    ({"x": {"a": 1}}, "parameter 'x': expected list[int], got dict"),
    ({"m": {"k": "v"}}, "parameter 'm['k']': expected float, got str 'v'"),
    ({"m": {1: 2.0}}, "parameter 'm': dict keys must be str, got int 1"),
    ({"out": an_output(text=5)}, "parameter 'out.text': expected str, got int 5"),
    ({"out": an_output(boxes=[Box("a", 1.0), Box("b", "high")])},
     "parameter 'out.boxes[1].score': expected float, got str 'high'"),
    ({"out": an_output(scores={"a": None})},
     "parameter 'out.scores['a']': expected float, got NoneType None"),
    ({"out": an_output(audio=Audio("not bytes"))},
     "parameter 'out.audio.bytes': expected bytes, got str"),
    ({"out": Box("a", 1.0)}, "parameter 'out': expected Outputs, got Box"),
    ({"out": {"text": "t"}}, "parameter 'out': expected Outputs, got dict"),
    ({"arr": [1, 2]}, "parameter 'arr': expected numpy.ndarray, got list [1, 2]"),
    ({"arr": np.array(["a"])}, "parameter 'arr': unsupported ndarray dtype <U1"),
    ({"arr": np.array([None])}, "parameter 'arr': unsupported ndarray dtype object"),
    ({"img": np.zeros((2, 2))}, "parameter 'img': expected PIL.Image.Image, got ndarray"),
    ({"df": {"a": [1]}}, "parameter 'df': expected pandas.DataFrame, got dict"),
    ({"df": pd.DataFrame({"lag": pd.to_timedelta([1], unit="s")})},
     "parameter 'df': column 'lag' has dtype timedelta64"),
    ({"df": pd.DataFrame({"o": pd.Series([1, "a"], dtype=object)})},
     "parameter 'df': column 'o' holds int 1"),
    ({"c": "cat"}, "parameter 'c': expected Concept, got str 'cat'"),
    ({"c": Concept(id=3)}, "parameter 'c.id': expected str, got int 3"),
    ({"c": Concept("a", value="high")}, "parameter 'c.value': expected float, got str 'high'"),
])
def test_a_wrong_value_names_the_parameter_the_type_and_what_was_given(kwargs: dict,
                                                                       message: str) -> None:
    with pytest.raises(InputError) as e:
        encode_args(SPEC, kwargs)
    assert message in str(e.value)


def test_a_float_too_large_is_an_input_error() -> None:
    with pytest.raises(InputError, match="parameter 'out.scores\\['s'\\]': expected float, got an int"):
        encode_args(SPEC, {"out": an_output(scores={"s": 10**400})})


def test_encode_value_names_what_it_encodes() -> None:
    with pytest.raises(InputError,
                       match=r"predict\(\) returned a value that\[1\]: expected str, got int 2"):
        encode_value(type_node(list[str], "r"), ["a", 2], "predict() returned a value that")
    assert decode_value(type_node(list[str], "r"), encode_value(type_node(list[str], "r"), ["a"], "r"),
                        "r") == ["a"]


def test_valid_arguments_encode_and_decode_by_name() -> None:
    kwargs = {"n": 3, "x": [1, 2], "m": {"a": 1.0}, "out": an_output(), "arr": np.arange(3),
              "img": Image.new("RGB", (2, 2), "red"), "df": pd.DataFrame({"a": [1]}),
              "c": Concept("cat")}
    entries = [pb.Entry.FromString(e.SerializeToString()) for e in encode_args(SPEC, kwargs)]
    assert [e.key for e in entries] == list(kwargs)
    out = decode_args(SPEC, entries)
    assert set(out) == set(kwargs) and "flag" not in out  # defaults: the caller of decode_args
    assert out["out"] == kwargs["out"] and out["c"] == kwargs["c"] and out["x"] == [1, 2]
    np.testing.assert_array_equal(out["arr"], kwargs["arr"])


# ------------------------------------------------------------------ errors, wire side


def required(**override: pb.Value) -> list[pb.Entry]:
    good = {e.key: e.value for e in encode_args(SPEC, {
        "n": 1, "x": [], "m": {}, "out": an_output(), "arr": np.zeros(2),
        "img": Image.new("L", (1, 1)), "df": pd.DataFrame()})}
    good.update(override)
    return [pb.Entry(key=k, value=v) for k, v in good.items()]


def test_required_entries_decode() -> None:
    assert decode_args(SPEC, required())["n"] == 1


@pytest.mark.parametrize("override, message", [
    ({"n": pb.Value(str="x")}, "predict() parameter 'n': expected int, got str 'x'"),
    ({"n": pb.Value(float=1.0)}, "parameter 'n': expected int, got float 1.0"),
    ({"x": pb.Value(map=pb.MapValue())}, "parameter 'x': expected list[int], got map"),
    ({"x": pb.Value(list=pb.ListValue(items=[pb.Value(int=1), pb.Value(none=True)]))},
     "parameter 'x[1]': expected int, got NoneType None"),
    ({"m": pb.Value(map=pb.MapValue(entries=[pb.Entry(key="k", value=pb.Value(str="v"))]))},
     "parameter 'm['k']': expected float, got str 'v'"),
    ({"out": pb.Value(fields=pb.MapValue(entries=[pb.Entry(key="text", value=pb.Value(str="t"))]))},
     "parameter 'out': Outputs is missing field(s) count, boxes"),
    ({"arr": pb.Value()}, "parameter 'arr': expected numpy.ndarray, got nothing"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="<f8", shape=[2, 3], data=b"\0" * 40))},
     "parameter 'arr': ndarray of shape (2, 3) and dtype float64 needs 48 bytes, got 40"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="<i4", shape=[-1, -1], data=b"\0" * 4))},
     "parameter 'arr': ndarray of shape (-1, -1)"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="|O", shape=[1], data=b"\0" * 8))},
     "parameter 'arr': unsupported ndarray dtype '|O'"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="<U3", shape=[1], data=b"\0" * 12))},
     "parameter 'arr': unsupported ndarray dtype '<U3'"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="<M8[ns]", shape=[1], data=b"\0" * 8))},
     "unsupported ndarray dtype '<M8[ns]'"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="(-1,)i4", shape=[1], data=b""))},
     "parameter 'arr': unknown ndarray dtype '(-1,)i4'"),
    ({"arr": pb.Value(ndarray=pb.NDArray(dtype="nonsense", shape=[1], data=b""))},
     "unknown ndarray dtype 'nonsense'"),
    ({"img": pb.Value(image=pb.Image(format="PNG", data=b"\x89PNG\r\n\x1a\n broken"))},
     "parameter 'img': cannot decode the image"),
    ({"img": pb.Value(image=pb.Image(format="raw", mode="RGB", width=4, height=4, data=b"\0" * 5))},
     "parameter 'img': cannot decode the image"),
    ({"img": pb.Value(image=pb.Image(format="raw", mode="NOPE", width=1, height=1, data=b"\0"))},
     "parameter 'img': cannot decode the image"),
    ({"n": pb.Value(big_int="12x")}, "parameter 'n': big_int '12x' is not a decimal integer"),
    ({"df": pb.Value(dataframe=pb.DataFrame(
        columns=[pb.Column(name=pb.Value(str="a"),
                           array=pb.NDArray(dtype="<i8", shape=[3], data=b"\0" * 24))],
        index=pb.Column(range=pb.RangeIndex(start=0, stop=2, step=1))))},
     "parameter 'df': cannot rebuild the DataFrame"),
    ({"df": pb.Value(dataframe=pb.DataFrame(columns=[pb.Column(name=pb.Value(str="a"))]))},
     "parameter 'df': a DataFrame column carries no data"),
    ({"df": pb.Value(dataframe=pb.DataFrame(columns=[pb.Column(
        name=pb.Value(str="a"), datetimes=pb.Datetimes(values=[0], unit="weeks"))]))},
     "parameter 'df': unknown datetime unit 'weeks'"),
])
def test_a_wrong_value_on_the_wire_is_an_input_error(override: dict, message: str) -> None:
    with pytest.raises(InputError) as e:
        decode_args(SPEC, required(**override))
    assert message in str(e.value)


def test_a_corrupt_encoded_image_is_an_input_error() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(buf, format="PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(InputError, match="parameter 'img': cannot decode the image"):
        decode_args(SPEC, required(img=pb.Value(image=pb.Image(format="PNG", data=truncated))))


def test_an_unknown_parameter_is_refused() -> None:
    with pytest.raises(InputError,
                       match=r"predict\(\) got an unexpected parameter 'zz' \(parameters: n, x,"):
        decode_args(SPEC, [*required(), pb.Entry(key="zz", value=pb.Value(int=1))])


def test_a_missing_required_parameter_is_refused() -> None:
    entries = [e for e in required() if e.key not in ("x", "df")]
    with pytest.raises(InputError, match=r"predict\(\) missing required parameter\(s\): x, df$"):
        decode_args(SPEC, entries)


# ------------------------------------------------------------------ media references


@pytest.fixture
def png(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "pic.png"
    Image.new("RGBA", (3, 2), (10, 20, 30, 40)).save(path)
    return path


def media_args(**kwargs: Any) -> dict[str, Any]:
    wire = [pb.Entry.FromString(e.SerializeToString()) for e in encode_args(MEDIA, kwargs)]
    return decode_args(MEDIA, wire)


def test_images_by_path_path_string_and_bytes(png: pathlib.Path) -> None:
    want = Image.open(png)
    for ref in (png, str(png), png.read_bytes()):
        out = media_args(img=ref, audio=Audio(b""), video=Video(b""), raw=b"")["img"]
        assert (out.mode, out.size, out.tobytes()) == (want.mode, want.size, want.tobytes())


def test_audio_video_and_bytes_by_reference(tmp_path: pathlib.Path) -> None:
    sound, clip, blob = tmp_path / "a.wav", tmp_path / "v.mp4", tmp_path / "b.bin"
    sound.write_bytes(b"RIFF....WAVE")
    clip.write_bytes(b"\0\0\0\x18ftypmp42")
    blob.write_bytes(b"\x00\xff")
    refs = ((sound, clip), (str(sound), str(clip)), (sound.read_bytes(), clip.read_bytes()))
    for audio, video in refs:
        out = media_args(img=Image.new("L", (1, 1)), audio=audio, video=video, raw=blob)
        assert out["audio"] == Audio(b"RIFF....WAVE", "")
        assert out["video"] == Video(b"\0\0\0\x18ftypmp42", "")
        assert out["raw"] == b"\x00\xff"


def test_plain_bytes_are_not_read_from_a_path_string(tmp_path: pathlib.Path) -> None:
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"data")
    with pytest.raises(InputError, match="parameter 'raw': expected bytes, got str"):
        encode_args(MEDIA, {"raw": str(blob)})


def test_a_missing_file_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.png"
    for kwargs in ({"img": missing}, {"img": str(missing)}, {"audio": missing}, {"raw": missing}):
        with pytest.raises(InputError, match=r"media\(\) parameter '\w+': no such file: '.*nope.png'"):
            encode_args(MEDIA, kwargs)


def test_media_references_are_only_read_on_the_callers_side(png: pathlib.Path) -> None:
    node = type_node(Image.Image, "x")
    with pytest.raises(InputError, match="expected PIL.Image.Image, got PosixPath"):
        encode_value(node, png, "x")
    assert encode_value(node, png, "x", media_refs=True).image.format == "encoded"


# ------------------------------------------------------------------ bytes arguments sent apart


class Blobs(ModelClass):
    @ModelClass.method
    def put(self, first: bytes, second: bytes, name: str = "", maybe: Optional[bytes] = None) -> int:
        return 0


@pytest.mark.parametrize("size", [0, 127, 128, (1 << 14) - 1, 1 << 14, 1 << 16, (1 << 21) + 5])
def test_raw_arguments_count_and_decode_as_inside_the_request(size):
    from jupyter_deploy.model.codec import add_raw, args_decoder, encode_request, raw_size

    spec = Blobs.method_specs()["put"]
    kwargs = {"first": b"a" * size, "second": b"b" * 70_000, "name": "n", "maybe": b"m" * 70_000}
    whole = encode_request(spec, kwargs)
    raw: dict = {}
    apart = encode_request(spec, kwargs, raw=raw)
    # Only plain ``bytes`` parameters from 64 KiB on go apart (not Optional[bytes], not str).
    assert sorted(raw) == (["first", "second"] if size >= 1 << 16 else ["second"])
    assert apart.ByteSize() + raw_size(raw) == whole.ByteSize()
    assert add_raw(apart, raw).ByteSize() == whole.ByteSize() and len(apart.args) == 4 - len(raw)
    decode = args_decoder(spec)
    assert decode(apart.args, raw) == decode(whole.args) == kwargs


def test_raw_arguments_fail_as_inside_the_request():
    from jupyter_deploy.model.codec import args_decoder

    decode = args_decoder(Blobs.method_specs()["put"])
    big = b"x" * 70_000

    def error(entries, raw=None) -> str:
        with pytest.raises(InputError) as e:
            decode(entries, raw)
        return str(e.value)

    as_bytes = lambda key: [pb.Entry(key=key, value=pb.Value(bytes=big))]  # noqa: E731
    for key in ("name", "nope"):  # declared str; not a parameter
        assert error([], {key: big, "first": big, "second": big}) == error(
            as_bytes(key) + as_bytes("first") + as_bytes("second"))
    assert error([], {"first": big}) == error(as_bytes("first")) == "put() missing required parameter(s): second"
    assert decode([], {"first": big, "second": big, "maybe": big})["maybe"] == big  # Optional[bytes] decodes it too
