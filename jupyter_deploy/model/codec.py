"""Turn typed Python values into protocol ``Value`` messages and back.

``encoder(node)`` and ``decoder(node)`` compile a declared type once into a
function, so a call pays for one dictionary look-up and the conversions its
types need, not for a walk over every supported type. Nothing is pickled:
every value is rebuilt from plain fields, so a payload cannot run code on the
side that decodes it.

A value that does not fit its type raises ``InputError`` naming the
parameter, the expected type and what was given::

    >>> encode_args(spec, {"x": "three"})
    InputError: parameter 'x': expected int, got str 'three'
"""

from __future__ import annotations

import dataclasses
import io
import os
from functools import lru_cache
from typing import Any, Callable

from ..errors import InputError
from ..proto import runner_pb2 as pb
from . import types as dtypes
from .signature import MethodSpec, TypeNode

Encoder = Callable[[Any], pb.Value]
Decoder = Callable[[pb.Value], Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: ndarray dtype kinds and sizes that cross the wire.
ARRAY_DTYPES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"])


class Mismatch(Exception):
    """A value does not fit its type; ``path`` grows as it propagates out of containers."""

    def __init__(self, expected: Any, given: Any = None, detail: str = ""):
        self.expected, self.given, self.detail = str(expected), given, detail
        self.path = ""
        super().__init__(detail)

    def describe(self, what: str, param: str | None = None) -> str:
        # Given ``param``, the path goes inside its quotes: parameter 'x[2]', not 'x'[2].
        where = f"{what} '{param}{self.path}'" if param is not None else f"{what}{self.path}"
        if self.detail:
            return f"{where}: {self.detail}"
        given = self.given
        shown = repr(given)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{where}: expected {self.expected}, got {type(given).__name__} {shown}".rstrip()


def _at(segment: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Mismatch as e:
        e.path = segment + e.path
        raise


# ------------------------------------------------------------------ encoding


@lru_cache(maxsize=1024)
def encoder(node: TypeNode, media_refs: bool = False) -> Encoder:
    """A function that encodes a value of type ``node``.

    With ``media_refs`` (the caller's side of a call), bytes, Image, Audio and
    Video values may also be given as a URL, a ``pathlib.Path`` or raw bytes.
    """
    k = node.kind
    if k == "str":
        def enc(v):
            if isinstance(v, str):
                return pb.Value(str=v)
            raise Mismatch(node, v)
    elif k == "bytes":
        def enc(v):
            if isinstance(v, (bytes, bytearray, memoryview)):
                return pb.Value(bytes=bytes(v))
            if media_refs and _is_media_ref(v, allow_path_str=False):
                return pb.Value(bytes=_read_media_ref(v))
            raise Mismatch(node, v)
    elif k == "int":
        enc = _encode_int
    elif k == "float":
        def enc(v):
            if isinstance(v, (float, int)) and not isinstance(v, bool) or _is_np_number(v, "fiu"):
                try:
                    return pb.Value(float=float(v))
                except OverflowError:
                    raise Mismatch(node, v, f"expected float, got an int of {v.bit_length()} bits, "
                                   "too large for a float") from None
            raise Mismatch(node, v)
    elif k == "bool":
        def enc(v):
            if isinstance(v, bool) or _is_np_number(v, "b"):
                return pb.Value(bool=bool(v))
            raise Mismatch(node, v)
    elif k == "none":
        def enc(v):
            if v is None:
                return pb.Value(none=True)
            raise Mismatch(node, v)
    elif k == "optional":
        inner = encoder(node.args[0], media_refs)

        def enc(v):
            return pb.Value(none=True) if v is None else inner(v)
    elif k == "list":
        item = encoder(node.args[0], media_refs)

        def enc(v):
            if not isinstance(v, (list, tuple)):
                raise Mismatch(node, v)
            return pb.Value(list=pb.ListValue(items=[_at(f"[{i}]", lambda x=x: item(x))
                                                     for i, x in enumerate(v)]))
    elif k == "dict":
        item = encoder(node.args[0], media_refs)

        def enc(v):
            if not isinstance(v, dict):
                raise Mismatch(node, v)
            return pb.Value(map=pb.MapValue(entries=[_entry(key, val, item) for key, val in v.items()]))
    elif k == "json":
        def enc(v):
            if node.name == "dict" and not isinstance(v, dict) or node.name == "list" and not isinstance(v, (list, tuple)):
                raise Mismatch(node, v)
            return _encode_json(v)
    elif k == "image":
        def enc(v):
            return pb.Value(image=_encode_image(v, media_refs))
    elif k == "ndarray":
        def enc(v):
            return pb.Value(ndarray=_encode_ndarray(v))
    elif k == "dataframe":
        def enc(v):
            from ._dataframe import encode_dataframe
            return pb.Value(dataframe=encode_dataframe(v))
    elif k == "concept":
        def enc(v):
            return pb.Value(concept=_encode_concept(v))
    elif k == "region":
        def enc(v):
            if not isinstance(v, dtypes.Region):
                raise Mismatch(node, v)
            return pb.Value(region=pb.Region(
                box=v.box, concepts=[_at(f".concepts[{i}]", lambda c=c: _encode_concept(c))
                                     for i, c in enumerate(v.concepts)]))
    elif k == "frame":
        def enc(v):
            if not isinstance(v, dtypes.Frame):
                raise Mismatch(node, v)
            return pb.Value(frame=pb.Frame(image=_at(".image", lambda: _encode_image(v.image, False)),
                                           time=_field(v, "time", "float")))
    elif k in ("audio", "video"):
        cls = dtypes.Audio if k == "audio" else dtypes.Video

        def enc(v):
            if isinstance(v, cls):
                media = pb.Media(data=_field(v, "bytes", "bytes"), mime=_field(v, "mime", "str"))
            elif media_refs and _is_media_ref(v, allow_path_str=True):
                media = pb.Media(data=_read_media_ref(v))
            else:
                raise Mismatch(node, v)
            return pb.Value(**{k: media})
    elif k == "dataclass":
        fields = [(name, encoder(t, media_refs)) for name, t in node.fields]

        def enc(v):
            # Any dataclass with the fields will do: a client holds a class rebuilt from the wire.
            if not dataclasses.is_dataclass(v) or isinstance(v, type) or not all(
                    hasattr(v, name) for name, _ in fields):
                raise Mismatch(node, v)
            return pb.Value(fields=pb.MapValue(entries=[
                _entry(name, getattr(v, name), f, sep=".") for name, f in fields]))
    else:
        raise ValueError(f"no encoder for type kind {k!r}")
    return enc


def _entry(key: Any, val: Any, enc: Encoder, sep: str = "") -> pb.Entry:
    if not isinstance(key, str):
        raise Mismatch("str keys", key, f"dict keys must be str, got {type(key).__name__} {key!r}")
    seg = f".{key}" if sep else f"[{key!r}]"
    return pb.Entry(key=key, value=_at(seg, lambda: enc(val)))


def _field(v: Any, name: str, kind: str) -> Any:
    # The data types are plain dataclasses, so their fields may hold anything; check them
    # here, where the error can name the field, rather than let protobuf raise TypeError.
    return _at(f".{name}", lambda: getattr(encoder(TypeNode(kind))(getattr(v, name)), kind))


def _is_np_number(v: Any, kinds: str) -> bool:
    dtype = getattr(v, "dtype", None)
    return dtype is not None and getattr(v, "shape", None) == () and dtype.kind in kinds


def _encode_int(v: Any) -> pb.Value:
    if isinstance(v, bool) or not (isinstance(v, int) or _is_np_number(v, "iu")):
        raise Mismatch("int", v)
    v = int(v)
    if _INT64_MIN <= v <= _INT64_MAX:
        return pb.Value(int=v)
    return pb.Value(big_int=str(v))


def _encode_json(v: Any) -> pb.Value:
    if v is None:
        return pb.Value(none=True)
    if isinstance(v, bool):
        return pb.Value(bool=v)
    if isinstance(v, int):
        return _encode_int(v)
    if isinstance(v, float):
        return pb.Value(float=v)
    if isinstance(v, str):
        return pb.Value(str=v)
    if isinstance(v, (list, tuple)):
        return pb.Value(list=pb.ListValue(items=[_at(f"[{i}]", lambda x=x: _encode_json(x))
                                                 for i, x in enumerate(v)]))
    if isinstance(v, dict):
        return pb.Value(map=pb.MapValue(entries=[_entry(key, val, _encode_json) for key, val in v.items()]))
    raise Mismatch("a JSON-like value (None, bool, int, float, str, list, dict)", v)


def _encode_concept(v: Any) -> pb.Concept:
    if not isinstance(v, dtypes.Concept):
        raise Mismatch("Concept", v)
    return pb.Concept(id=_field(v, "id", "str"), name=_field(v, "name", "str"),
                      value=_field(v, "value", "float"))


def _encode_ndarray(v: Any) -> pb.NDArray:
    import numpy as np

    if not isinstance(v, np.ndarray):
        raise Mismatch("numpy.ndarray", v)
    dt = v.dtype
    if f"{dt.kind}{dt.itemsize}" not in ARRAY_DTYPES:
        raise Mismatch("numpy.ndarray", v, f"unsupported ndarray dtype {dt} (use bool, int8-64, "
                       "uint8-64, float16/32/64 or complex64/128)")
    return pb.NDArray(dtype=dt.str, shape=v.shape, data=np.ascontiguousarray(v).tobytes())


def _encode_image(v: Any, media_refs: bool) -> pb.Image:
    if media_refs and _is_media_ref(v, allow_path_str=True):
        return pb.Image(format="encoded", data=_read_media_ref(v))
    from PIL import Image

    if not isinstance(v, Image.Image):
        raise Mismatch("PIL.Image.Image", v)
    msg = pb.Image(format="raw", mode=v.mode, width=v.width, height=v.height, data=v.tobytes())
    if v.mode in ("P", "PA") and v.palette is not None:
        msg.palette_mode = v.palette.mode
        msg.palette = bytes(v.palette.tobytes())
    return msg


def _is_media_ref(v: Any, allow_path_str: bool) -> bool:
    if isinstance(v, os.PathLike):
        return True
    if isinstance(v, (bytes, bytearray, memoryview)):
        return True
    return isinstance(v, str) and (v.startswith(("http://", "https://")) or allow_path_str)


def _read_media_ref(v: Any) -> bytes:
    from .media import read_media

    try:
        return read_media(v)
    except (OSError, ValueError) as e:
        raise Mismatch("", v, str(e)) from None


# ------------------------------------------------------------------ decoding


def decoder(node: TypeNode) -> Decoder:
    """A function that decodes a ``Value`` declared as ``node`` (raises Mismatch)."""
    return _decoder(node, _classes(node))


def _classes(node: TypeNode) -> tuple[Any, ...]:
    # TypeNode equality ignores the bound classes, so without them in the cache key a
    # dataclass redefined in a notebook (or another one of the same shape) would decode
    # into the class first seen.
    if not node.args and not node.fields:
        return (node.py,) if node.kind == "dataclass" else ()
    return (node.py, *(c for a in node.args for c in _classes(a)),
            *(c for _, t in node.fields for c in _classes(t)))


@lru_cache(maxsize=1024)
def _decoder(node: TypeNode, classes: tuple[Any, ...]) -> Decoder:
    k = node.kind
    if k in ("str", "bytes", "bool"):
        def dec(v):
            if v.WhichOneof("kind") != k:
                raise Mismatch(node, _shown(v))
            return getattr(v, k)
    elif k == "int":
        def dec(v):
            which = v.WhichOneof("kind")
            if which == "int":
                return v.int
            if which == "big_int":
                return _big_int(v.big_int)
            raise Mismatch(node, _shown(v))
    elif k == "float":
        def dec(v):
            which = v.WhichOneof("kind")
            if which == "float":
                return v.float
            if which == "int":
                return float(v.int)
            raise Mismatch(node, _shown(v))
    elif k == "none":
        def dec(v):
            if v.WhichOneof("kind") != "none":
                raise Mismatch(node, _shown(v))
            return None
    elif k == "optional":
        inner = decoder(node.args[0])

        def dec(v):
            return None if v.WhichOneof("kind") == "none" else inner(v)
    elif k == "list":
        item = decoder(node.args[0])

        def dec(v):
            if v.WhichOneof("kind") != "list":
                raise Mismatch(node, _shown(v))
            return [_at(f"[{i}]", lambda x=x: item(x)) for i, x in enumerate(v.list.items)]
    elif k == "dict":
        item = decoder(node.args[0])

        def dec(v):
            if v.WhichOneof("kind") != "map":
                raise Mismatch(node, _shown(v))
            return {e.key: _at(f"[{e.key!r}]", lambda e=e: item(e.value)) for e in v.map.entries}
    elif k == "json":
        want = {"dict": "map", "list": "list"}.get(node.name)

        def dec(v):
            if want and v.WhichOneof("kind") != want:
                raise Mismatch(node, _shown(v))
            return _decode_json(v)
    elif k == "image":
        def dec(v):
            if v.WhichOneof("kind") != "image":
                raise Mismatch(node, _shown(v))
            return _decode_image(v.image)
    elif k == "ndarray":
        def dec(v):
            if v.WhichOneof("kind") != "ndarray":
                raise Mismatch(node, _shown(v))
            return _decode_ndarray(v.ndarray)
    elif k == "dataframe":
        def dec(v):
            if v.WhichOneof("kind") != "dataframe":
                raise Mismatch(node, _shown(v))
            from ._dataframe import decode_dataframe
            return decode_dataframe(v.dataframe)
    elif k == "concept":
        def dec(v):
            if v.WhichOneof("kind") != "concept":
                raise Mismatch(node, _shown(v))
            return _decode_concept(v.concept)
    elif k == "region":
        def dec(v):
            if v.WhichOneof("kind") != "region":
                raise Mismatch(node, _shown(v))
            r = v.region
            if len(r.box) != 4:
                raise Mismatch(node, None, f"a Region box needs 4 numbers, got {len(r.box)}")
            return dtypes.Region(tuple(r.box), [_decode_concept(c) for c in r.concepts])
    elif k == "frame":
        def dec(v):
            if v.WhichOneof("kind") != "frame":
                raise Mismatch(node, _shown(v))
            return dtypes.Frame(_decode_image(v.frame.image), v.frame.time)
    elif k in ("audio", "video"):
        cls = dtypes.Audio if k == "audio" else dtypes.Video

        def dec(v):
            if v.WhichOneof("kind") != k:
                raise Mismatch(node, _shown(v))
            media = getattr(v, k)
            return cls(media.data, media.mime)
    elif k == "dataclass":
        if node.py is None:
            raise ValueError(f"dataclass {node.name} has no Python class; call signature.with_classes first")
        fields = [(name, decoder(t)) for name, t in node.fields]
        cls = node.py

        def dec(v):
            if v.WhichOneof("kind") != "fields":
                raise Mismatch(node, _shown(v))
            got = {e.key: e.value for e in v.fields.entries}
            missing = [name for name, _ in fields if name not in got]
            if missing:
                raise Mismatch(node, None, f"{node.name} is missing field(s) {', '.join(missing)}")
            return cls(**{name: _at(f".{name}", lambda f=f, name=name: f(got[name])) for name, f in fields})
    else:
        raise ValueError(f"no decoder for type kind {k!r}")
    return dec


def _shown(v: pb.Value) -> Any:
    which = v.WhichOneof("kind")
    if which in ("str", "int", "float", "bool", "bytes"):
        return getattr(v, which)
    if which == "none":
        return None
    # A stand-in whose class name is the wire kind, so the message reads "got map".
    return type(which or "nothing", (), {"__repr__": lambda self: ""})()


def _decode_json(v: pb.Value) -> Any:
    which = v.WhichOneof("kind")
    if which in ("str", "int", "float", "bool"):
        return getattr(v, which)
    if which == "none":
        return None
    if which == "big_int":
        return _big_int(v.big_int)
    if which == "list":
        return [_decode_json(x) for x in v.list.items]
    if which == "map":
        return {e.key: _decode_json(e.value) for e in v.map.entries}
    raise Mismatch("a JSON-like value", _shown(v))


def _big_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Mismatch("int", None, f"big_int {text[:40]!r} is not a decimal integer") from None


def _decode_concept(c: pb.Concept) -> dtypes.Concept:
    return dtypes.Concept(c.id, c.name, c.value)


def _decode_ndarray(a: pb.NDArray) -> Any:
    import numpy as np

    try:
        dt = np.dtype(a.dtype)
    except (TypeError, ValueError):  # numpy raises either, by what is malformed
        raise Mismatch("numpy.ndarray", None, f"unknown ndarray dtype {a.dtype!r}") from None
    if f"{dt.kind}{dt.itemsize}" not in ARRAY_DTYPES:
        raise Mismatch("numpy.ndarray", None, f"unsupported ndarray dtype {a.dtype!r}")
    shape = tuple(a.shape)
    count = 1
    for n in shape:
        count *= n
    if any(n < 0 for n in shape) or count * dt.itemsize != len(a.data):
        raise Mismatch("numpy.ndarray", None,
                       f"ndarray of shape {shape} and dtype {dt} needs {count * dt.itemsize} bytes, "
                       f"got {len(a.data)}")
    # frombuffer over the message's bytes is read-only; models expect to own their arrays.
    return np.frombuffer(a.data, dtype=dt).reshape(shape).copy()


def _decode_image(m: pb.Image) -> Any:
    from PIL import Image

    try:
        if m.format == "raw":
            # Checked before PIL allocates the image: 100000 x 100000 pixels of nothing would be
            # 30 GB. Eight pixels take whole bytes in every mode ("1" packs them into one).
            eight = len(Image.new(m.mode, (8, 1)).tobytes())
            if m.width < 0 or m.height < 0 or len(m.data) < eight * m.width * m.height // 8:
                raise Mismatch("PIL.Image.Image", None, f"cannot decode the image: a raw {m.mode} image of {m.width} x {m.height} "
                                                        f"needs {eight * m.width * m.height // 8} bytes, "
                                                        f"got {len(m.data)}")
            img = Image.frombytes(m.mode, (m.width, m.height), m.data)
            if m.palette:
                img.putpalette(m.palette, rawmode=m.palette_mode or "RGB")
            return img
        # PIL refuses files of more than twice Image.MAX_IMAGE_PIXELS (decompression bombs).
        img = Image.open(io.BytesIO(m.data))
        img.load()  # decode now, so a broken file is the caller's error, not the model's
        return img
    except Mismatch:
        raise
    except Exception as e:
        raise Mismatch("PIL.Image.Image", None, f"cannot decode the image: {e}") from None


# ------------------------------------------------------------------ calls


def set_plain(target: pb.Value, kind: str, value: Any) -> bool:
    """Set text or bytes ``value`` into ``target`` in place (a Value built first, then copied
    into its parent, copies the payload once per level: it shows on megabyte images); False,
    and ``target`` untouched, for any other value, which the caller encodes."""
    if kind == "str" and type(value) is str:
        target.str = value
    elif kind == "bytes" and type(value) is bytes:
        target.bytes = value
    else:
        return False
    return True


def encode_request(spec: MethodSpec, kwargs: dict[str, Any], media_refs: bool = True,
                   raw: dict[str, bytes] | None = None, raw_from: int = 1 << 16) -> pb.PredictRequest:
    """A PredictRequest for a call's (non-stream) arguments, given by parameter name.

    With ``raw`` (a dict to fill), ``bytes`` arguments of ``raw_from`` bytes or more go
    there instead of into the request: a transport that can send them beside the request
    (the ipc plane) saves the copies into and out of the protobuf; any other puts them back
    with ``add_raw``."""
    request = pb.PredictRequest(method=spec.name)
    for p in spec.params:
        if p.stream or p.name not in kwargs:
            continue
        value = kwargs[p.name]
        if raw is not None and type(value) is bytes and len(value) >= raw_from and p.type.kind == "bytes":
            raw[p.name] = value
            continue
        entry = request.args.add()
        entry.key = p.name
        if not set_plain(entry.value, p.type.kind, value):
            try:
                entry.value.MergeFrom(encoder(p.type, media_refs)(value))
            except Mismatch as e:
                raise InputError(e.describe(f"{spec.name}() parameter", p.name)) from None
    return request


def add_raw(request: pb.PredictRequest, raw: dict[str, Any]) -> pb.PredictRequest:
    """A copy of ``request`` with the ``bytes`` arguments ``encode_request`` kept apart put back
    in (a copy: a call that fails over to another replica sends ``request`` and ``raw`` again)."""
    whole = pb.PredictRequest()
    whole.CopyFrom(request)
    for key, value in raw.items():
        entry = whole.args.add()
        entry.key = key
        entry.value.bytes = value
    return whole


def raw_size(raw: dict[str, Any]) -> int:
    """How many bytes ``raw``'s arguments add to a serialized PredictRequest (``add_raw``):
    the size limits and access records count a request the same whichever way it came."""
    return sum(_field_size(_field_size(len(key.encode())) + _field_size(_field_size(len(value))))
               for key, value in raw.items())


def _field_size(n: int) -> int:
    """A length-delimited field of ``n`` bytes, with its one-byte tag (fields 1-15) and length."""
    return 1 + ((n.bit_length() + 6) // 7 or 1) + n


def encode_args(spec: MethodSpec, kwargs: dict[str, Any], media_refs: bool = True) -> list[pb.Entry]:
    """Encode a call's (non-stream) arguments, given by parameter name."""
    return list(encode_request(spec, kwargs, media_refs).args)


def decode_args(spec: MethodSpec, entries: Any) -> dict[str, Any]:
    """Decode a call's arguments; unknown or missing parameters raise InputError."""
    return args_decoder(spec)(entries)


def args_decoder(spec: MethodSpec) -> Callable[[Any], dict[str, Any]]:
    """``decode_args`` for one method, its rules worked out once: a server keeps one per
    method and calls it per request (looking the decoders up per call costs more than the
    decoding of small arguments)."""
    by_name = {p.name: p for p in spec.params}
    decoders = {p.name: decoder(p.type) for p in spec.params if not p.stream}
    required = [p.name for p in spec.params if not p.stream and not p.has_default]

    plain = frozenset(p.name for p in spec.params if not p.stream and p.type.kind == "bytes")

    def decode(entries: Any, raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """``raw``: arguments sent as bytes beside the request (``encode_request``)."""
        out = {}
        for e in entries:
            key = e.key
            dec = decoders.get(key)
            if dec is None:
                raise InputError(f"{spec.name}() got an unexpected parameter '{key}' "
                                 f"(parameters: {', '.join(by_name) or 'none'})")
            try:
                out[key] = dec(e.value)
            except Mismatch as m:
                raise InputError(m.describe(f"{spec.name}() parameter", key)) from None
        if raw:
            for key, value in raw.items():
                if key in plain:
                    out[key] = value
                    continue
                dec = decoders.get(key)
                if dec is None:
                    raise InputError(f"{spec.name}() got an unexpected parameter '{key}' "
                                     f"(parameters: {', '.join(by_name) or 'none'})")
                # Declared otherwise (the caller's signature is older than the model's): decoded
                # as the same bytes in a request would be, so it fails or passes the same way.
                try:
                    out[key] = dec(pb.Value(bytes=value))
                except Mismatch as m:
                    raise InputError(m.describe(f"{spec.name}() parameter", key)) from None
        if not all(name in out for name in required):
            missing = [name for name in required if name not in out]
            raise InputError(f"{spec.name}() missing required parameter(s): {', '.join(missing)}")
        return out
    return decode


def encode_value(node: TypeNode, value: Any, what: str, media_refs: bool = False) -> pb.Value:
    """Encode one value (a return value or a stream item); ``what`` names it in errors."""
    try:
        return encoder(node, media_refs)(value)
    except Mismatch as e:
        raise InputError(e.describe(what)) from None


def decode_value(node: TypeNode, value: pb.Value, what: str) -> Any:
    try:
        return decoder(node)(value)
    except Mismatch as e:
        raise InputError(e.describe(what)) from None
