"""JSON for the runner wire: a method's arguments from JSON, its results to JSON, and JSON Schema.

Arguments are typed by the method's signature, so each parameter's type is compiled
once into a function from its JSON form straight to the runner's ``Value`` (no Python
object in between for the plain types). The JSON forms:

- ``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``: as JSON.
- ``bytes``, ``Image``: ``{"base64": ...}`` or ``{"url": ...}`` (the gateway fetches it);
  ``Audio``, ``Video``: the same, plus ``"mime"``.
- ``ndarray``: ``{"dtype", "shape", "data"}`` (data flat in row-major order, or nested),
  or ``{"base64": <a .npy file>}``.
- ``DataFrame``: pandas' ``orient="split"`` (``{"columns", "index", "data"}``).
- ``Concept``, ``Region``, ``Frame`` and dataclasses: objects with their field names.

Results are self-describing on the wire, so they are turned into JSON by what they are:
images as ``{"base64", "format", "width", "height"}`` (PNG for raw pixels), arrays as
``{"dtype", "shape", "data"}``, tables in ``orient="split"``, bytes and media as
``{"base64"}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from functools import lru_cache
from typing import Any, Callable

from ..model.codec import ARRAY_DTYPES, Mismatch
from ..model.signature import MethodSpec, TypeNode
from ..proto import runner_pb2 as pb

Encode = Callable[[Any], pb.Value]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: The types whose values may need fetching or heavy decoding: encoded off the event loop.
MEDIA_KINDS = frozenset({"bytes", "image", "audio", "video", "ndarray", "dataframe", "frame"})


def _at(segment: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Mismatch as e:
        e.path = segment + e.path
        raise


def _type_name(v: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


class JsonMismatch(Mismatch):
    """A JSON value that does not fit its declared type (names JSON's types, not Python's)."""

    def describe(self, what: str, param: str | None = None) -> str:
        where = f"{what} '{param}{self.path}'" if param is not None else f"{what}{self.path}"
        if self.detail:
            return f"{where}: {self.detail}"
        shown = repr(self.given)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"{where}: expected {self.expected}, got {_type_name(self.given)} {shown}".rstrip()


# ------------------------------------------------------------------ JSON -> Value


def media_bytes(v: Any, fetch: Callable[[str], bytes] | None, what: str) -> bytes:
    """The bytes of a media argument: ``{"base64"}``, ``{"url"}``, or raw bytes (a multipart file)."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, dict):
        if isinstance(v.get("base64"), str):
            try:
                return base64.b64decode(v["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise JsonMismatch(what, v, "'base64' is not valid base64") from None
        if isinstance(v.get("url"), str):
            if fetch is None:
                raise JsonMismatch(what, v, "fetching URLs is turned off on this gateway; send "
                                   "{\"base64\": ...}")
            try:
                return fetch(v["url"])
            except (OSError, ValueError) as e:
                raise JsonMismatch(what, v, str(e)) from None
    raise JsonMismatch(f'{what} as {{"base64": ...}} or {{"url": ...}}', v)


@lru_cache(maxsize=1024)
def encoder(node: TypeNode, fetch: Callable[[str], bytes] | None = None) -> Encode:
    """A function from the JSON form of a ``node`` value to its ``Value`` (raises Mismatch)."""
    k = node.kind
    if k == "str":
        def enc(v):
            if type(v) is str:
                return pb.Value(str=v)
            raise JsonMismatch("string", v)
    elif k == "int":
        def enc(v):
            if type(v) is int:
                return pb.Value(int=v) if _INT64_MIN <= v <= _INT64_MAX else pb.Value(big_int=str(v))
            if type(v) is float and v.is_integer() and abs(v) < 2**53:
                return pb.Value(int=int(v))
            raise JsonMismatch("integer", v)
    elif k == "float":
        def enc(v):
            if type(v) in (int, float):
                try:
                    return pb.Value(float=float(v))
                except OverflowError:
                    raise JsonMismatch("number", v, "a number too large for a float") from None
            raise JsonMismatch("number", v)
    elif k == "bool":
        def enc(v):
            if type(v) is bool:
                return pb.Value(bool=v)
            raise JsonMismatch("boolean", v)
    elif k == "none":
        def enc(v):
            if v is None:
                return pb.Value(none=True)
            raise JsonMismatch("null", v)
    elif k == "optional":
        inner = encoder(node.args[0], fetch)

        def enc(v):
            return pb.Value(none=True) if v is None else inner(v)
    elif k == "list":
        item = encoder(node.args[0], fetch)

        def enc(v):
            if not isinstance(v, list):
                raise JsonMismatch(f"array of {_schema_name(node.args[0])}", v)
            return pb.Value(list=pb.ListValue(items=[_at(f"[{i}]", lambda x=x: item(x))
                                                     for i, x in enumerate(v)]))
    elif k == "dict":
        item = encoder(node.args[0], fetch)

        def enc(v):
            if not isinstance(v, dict):
                raise JsonMismatch("object", v)
            return pb.Value(map=pb.MapValue(entries=[
                pb.Entry(key=key, value=_at(f"[{key!r}]", lambda x=x: item(x))) for key, x in v.items()]))
    elif k == "json":
        def enc(v):
            if node.name == "dict" and not isinstance(v, dict):
                raise JsonMismatch("object", v)
            if node.name == "list" and not isinstance(v, list):
                raise JsonMismatch("array", v)
            return _any(v)
    elif k == "bytes":
        def enc(v):
            return pb.Value(bytes=media_bytes(v, fetch, "bytes"))
    elif k == "image":
        def enc(v):
            return pb.Value(image=pb.Image(format="encoded", data=media_bytes(v, fetch, "an image")))
    elif k in ("audio", "video"):
        def enc(v):
            data = media_bytes(v, fetch, k)
            mime = v.get("mime", "") if isinstance(v, dict) else ""
            if not isinstance(mime, str):
                raise JsonMismatch("string", mime, "'mime' must be a string")
            return pb.Value(**{k: pb.Media(data=data, mime=mime)})
    elif k == "ndarray":
        def enc(v):
            return pb.Value(ndarray=_ndarray(v))
    elif k == "dataframe":
        def enc(v):
            return pb.Value(dataframe=_dataframe(v))
    elif k == "concept":
        def enc(v):
            return pb.Value(concept=_concept(v))
    elif k == "region":
        def enc(v):
            fields = _object(v, "Region", {"box"}, {"box", "concepts"})
            box = fields["box"]
            if not (isinstance(box, list) and len(box) == 4
                    and all(type(x) in (int, float) for x in box)):
                raise JsonMismatch("4 numbers (x0, y0, x1, y1)", box)
            concepts = fields.get("concepts", [])
            if not isinstance(concepts, list):
                raise JsonMismatch("array of Concept", concepts)
            return pb.Value(region=pb.Region(box=box, concepts=[
                _at(f".concepts[{i}]", lambda c=c: _concept(c)) for i, c in enumerate(concepts)]))
    elif k == "frame":
        image = encoder(TypeNode("image"), fetch)

        def enc(v):
            fields = _object(v, "Frame", {"image"}, {"image", "time"})
            time = fields.get("time", 0.0)
            if type(time) not in (int, float):
                raise JsonMismatch("number", time)
            return pb.Value(frame=pb.Frame(image=_at(".image", lambda: image(fields["image"])).image,
                                           time=float(time)))
    elif k == "dataclass":
        fields = [(name, encoder(t, fetch)) for name, t in node.fields]
        names = {name for name, _ in fields}

        def enc(v):
            got = _object(v, node.name, names, names)
            return pb.Value(fields=pb.MapValue(entries=[
                pb.Entry(key=name, value=_at(f".{name}", lambda f=f, name=name: f(got[name])))
                for name, f in fields]))
    else:
        raise ValueError(f"no JSON encoder for type kind {k!r}")
    return enc


def _object(v: Any, what: str, required: set[str], allowed: set[str]) -> dict:
    if not isinstance(v, dict):
        raise JsonMismatch(f"{what} (an object with {', '.join(sorted(allowed))})", v)
    missing = sorted(required - v.keys())
    if missing:
        raise JsonMismatch(what, v, f"{what} is missing field(s) {', '.join(missing)}")
    unknown = sorted(v.keys() - allowed)
    if unknown:
        raise JsonMismatch(what, v, f"{what} has no field(s) {', '.join(unknown)} "
                           f"(fields: {', '.join(sorted(allowed))})")
    return v


def _concept(v: Any) -> pb.Concept:
    fields = _object(v, "Concept", {"id"}, {"id", "name", "value"})
    if not isinstance(fields["id"], str) or not isinstance(fields.get("name", ""), str):
        raise JsonMismatch("Concept", v, "a Concept's id and name are strings")
    value = fields.get("value", 0.0)
    if type(value) not in (int, float):
        raise JsonMismatch("Concept", v, "a Concept's value is a number")
    return pb.Concept(id=fields["id"], name=fields.get("name", ""), value=float(value))


def _any(v: Any) -> pb.Value:
    if v is None:
        return pb.Value(none=True)
    t = type(v)
    if t is bool:
        return pb.Value(bool=v)
    if t is int:
        return pb.Value(int=v) if _INT64_MIN <= v <= _INT64_MAX else pb.Value(big_int=str(v))
    if t is float:
        return pb.Value(float=v)
    if t is str:
        return pb.Value(str=v)
    if t is list:
        return pb.Value(list=pb.ListValue(items=[_at(f"[{i}]", lambda x=x: _any(x)) for i, x in enumerate(v)]))
    if t is dict:
        return pb.Value(map=pb.MapValue(entries=[
            pb.Entry(key=key, value=_at(f"[{key!r}]", lambda x=x: _any(x))) for key, x in v.items()]))
    raise JsonMismatch("a JSON value", v)


def _ndarray(v: Any) -> pb.NDArray:
    import numpy as np

    if isinstance(v, (bytes, bytearray)) or isinstance(v, dict) and "base64" in v:
        raw = v if isinstance(v, (bytes, bytearray)) else media_bytes(v, None, "ndarray")
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception as e:  # numpy raises several kinds for a bad file
            raise JsonMismatch("ndarray", None, f"not a .npy file: {e}") from None
    else:
        fields = _object(v, "ndarray", {"data"}, {"dtype", "shape", "data"})
        try:
            arr = np.asarray(fields["data"], dtype=fields.get("dtype"))
            if "shape" in fields:
                arr = arr.reshape(fields["shape"])
        except (TypeError, ValueError) as e:
            raise JsonMismatch("ndarray", None, f"not an array of that dtype and shape: {e}") from None
    dt = arr.dtype
    if f"{dt.kind}{dt.itemsize}" not in ARRAY_DTYPES:
        raise JsonMismatch("ndarray", None, f"unsupported ndarray dtype {dt} (use bool, int8-64, "
                           "uint8-64, float16/32/64 or complex64/128)")
    return pb.NDArray(dtype=dt.str, shape=arr.shape, data=np.ascontiguousarray(arr).tobytes())


def _dataframe(v: Any) -> pb.DataFrame:
    import pandas as pd

    from ..model._dataframe import encode_dataframe

    fields = _object(v, "DataFrame (orient=\"split\")", {"columns", "data"}, {"columns", "index", "data"})
    try:
        df = pd.DataFrame(fields["data"], columns=fields["columns"], index=fields.get("index"))
        return encode_dataframe(df)
    except Mismatch:
        raise
    except (TypeError, ValueError) as e:
        raise JsonMismatch("DataFrame", None, f"not a table in orient=\"split\": {e}") from None


def encode_arguments(spec: MethodSpec, args: Any, fetch: Callable[[str], bytes] | None,
                     skip_stream: bool = True) -> pb.PredictRequest:
    """A PredictRequest from a JSON object of named arguments; raises ArgumentError."""
    if not isinstance(args, dict):
        raise ArgumentError(f"{spec.name}(): the body must be a JSON object of named arguments, "
                            f"got {_type_name(args)}", None)
    params, required = _plan(spec, fetch)
    request = pb.PredictRequest(method=spec.name)
    add = request.args.add
    for name, value in args.items():
        param = params.get(name)
        if param is None or (param[0] and skip_stream):
            known = ", ".join(q.name for q in spec.params if not q.stream) or "none"
            raise ArgumentError(f"{spec.name}() got an unexpected parameter '{name}' (parameters: {known})",
                                name)
        stream, enc = param
        if stream:
            continue
        try:
            value_pb = enc(value)
        except Mismatch as e:
            raise ArgumentError(JsonMismatch.describe(e, f"{spec.name}() parameter", name), name) from None
        add(key=name, value=value_pb)
    if not required <= args.keys():
        missing = [n for n in required if n not in args]
        missing.sort(key=[p.name for p in spec.params].index)
        raise ArgumentError(f"{spec.name}() missing required parameter(s): {', '.join(missing)}", missing[0])
    return request


def _encoder_or_error(node: TypeNode, fetch: Callable[[str], bytes] | None) -> Encode:
    try:
        return encoder(node, fetch)
    except ValueError as e:  # a type with no JSON form: an error for the call that passes one
        def refuse(v: Any, e: ValueError = e) -> pb.Value:
            raise e
        return refuse


def _plan(spec: MethodSpec, fetch: Callable[[str], bytes] | None) -> tuple[dict, frozenset]:
    """``({name: (is stream, encoder)}, required names)`` of a method, made once per spec and fetcher
    and kept on the (frozen) spec, which routes cache: asked on every call."""
    plans = spec.__dict__.get("_json_plans")
    if plans is None:
        plans = {}
        object.__setattr__(spec, "_json_plans", plans)
    plan = plans.get(fetch)
    if plan is None:
        params = {p.name: (p.stream, None if p.stream else _encoder_or_error(p.type, fetch)) for p in spec.params}
        required = frozenset(p.name for p in spec.params if not p.stream and not p.has_default)
        plan = plans[fetch] = (params, required)
    return plan


def needs_thread(spec: MethodSpec) -> bool:
    """Whether encoding this method's arguments may block (fetch a URL, decode a large array)."""
    known = spec.__dict__.get("_needs_thread")
    if known is not None:  # asked on every call: kept on the (frozen) spec, which routes cache
        return known

    def heavy(node: TypeNode) -> bool:
        return node.kind in MEDIA_KINDS or any(heavy(a) for a in node.args) or any(
            heavy(t) for _, t in node.fields)
    answer = any(heavy(p.type) for p in spec.params)
    object.__setattr__(spec, "_needs_thread", answer)
    return answer


class ArgumentError(Exception):
    """A call's arguments do not fit the method (400, naming the parameter)."""

    def __init__(self, message: str, parameter: str | None):
        super().__init__(message)
        self.message, self.parameter = message, parameter


# ------------------------------------------------------------------ Value -> JSON


def to_json(v: pb.Value) -> Any:
    """The JSON form of a result value (by its wire kind)."""
    which = v.WhichOneof("kind")
    if which in ("str", "int", "bool"):
        return getattr(v, which)
    if which == "float":
        f = v.float
        return f if math.isfinite(f) else None
    if which == "none" or which is None:
        return None
    if which == "list":
        return [to_json(x) for x in v.list.items]
    if which in ("map", "fields"):
        return {e.key: to_json(e.value) for e in getattr(v, which).entries}
    if which == "big_int":
        return int(v.big_int)
    if which == "bytes":
        return {"base64": base64.b64encode(v.bytes).decode()}
    if which == "image":
        return image_json(v.image)
    if which == "ndarray":
        return ndarray_json(v.ndarray)
    if which == "dataframe":
        import json

        from ..model._dataframe import decode_dataframe

        return json.loads(decode_dataframe(v.dataframe).to_json(orient="split", date_format="iso"))
    if which == "concept":
        c = v.concept
        return {"id": c.id, "name": c.name, "value": c.value}
    if which == "region":
        r = v.region
        return {"box": list(r.box), "concepts": [{"id": c.id, "name": c.name, "value": c.value}
                                                 for c in r.concepts]}
    if which == "frame":
        return {"image": image_json(v.frame.image), "time": v.frame.time}
    if which in ("audio", "video"):
        m = getattr(v, which)
        return {"base64": base64.b64encode(m.data).decode(), "mime": m.mime}
    raise ValueError(f"no JSON form for a {which} value")


_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"), (b"GIF8", "GIF"), (b"RIFF", "WEBP"), (b"BM", "BMP"))


def image_json(m: pb.Image) -> dict:
    if m.format == "raw":
        from ..model.codec import _decode_image

        img = _decode_image(m)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return {"base64": base64.b64encode(buf.getvalue()).decode(), "format": "PNG",
                "width": img.width, "height": img.height}
    fmt = next((name for magic, name in _MAGIC if m.data.startswith(magic)), m.format)
    return {"base64": base64.b64encode(m.data).decode(), "format": fmt}


def ndarray_json(a: pb.NDArray) -> dict:
    import numpy as np

    dt = np.dtype(a.dtype)
    arr = np.frombuffer(a.data, dtype=dt)
    if dt.kind == "c":
        data: Any = [[x.real, x.imag] for x in arr.tolist()]
    else:
        data = arr.tolist()
    return {"dtype": dt.name, "shape": list(a.shape), "data": data}


# ------------------------------------------------------------------ JSON Schema


def _schema_name(node: TypeNode) -> str:
    return str(node)


_MEDIA_SCHEMA = {"type": "object", "properties": {"base64": {"type": "string", "contentEncoding": "base64"},
                                                  "url": {"type": "string", "format": "uri"}},
                 "oneOf": [{"required": ["base64"]}, {"required": ["url"]}]}


def schema(node: TypeNode) -> dict:
    """The JSON Schema of a value of type ``node`` in its JSON form."""
    k = node.kind
    simple = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
              "bool": {"type": "boolean"}, "none": {"type": "null"}}
    if k in simple:
        return dict(simple[k])
    if k == "optional":
        return {"anyOf": [schema(node.args[0]), {"type": "null"}]}
    if k == "list":
        return {"type": "array", "items": schema(node.args[0])}
    if k == "dict":
        return {"type": "object", "additionalProperties": schema(node.args[0])}
    if k == "json":
        return {"dict": {"type": "object"}, "list": {"type": "array"}}.get(node.name, {})
    if k in ("bytes", "image"):
        return {**_MEDIA_SCHEMA, "title": "PIL.Image.Image" if k == "image" else "bytes"}
    if k in ("audio", "video"):
        out = {**_MEDIA_SCHEMA, "title": k.capitalize()}
        out["properties"] = {**out["properties"], "mime": {"type": "string"}}
        return out
    if k == "ndarray":
        return {"title": "numpy.ndarray", "type": "object", "oneOf": [
            {"required": ["data"], "properties": {"dtype": {"type": "string"},
                                                  "shape": {"type": "array", "items": {"type": "integer"}},
                                                  "data": {"type": "array"}}},
            {"required": ["base64"], "properties": {"base64": {"type": "string",
                                                               "description": "a .npy file"}}}]}
    if k == "dataframe":
        return {"title": "pandas.DataFrame", "type": "object", "required": ["columns", "data"],
                "properties": {"columns": {"type": "array"}, "index": {"type": "array"},
                               "data": {"type": "array", "items": {"type": "array"}}}}
    concept = {"type": "object", "required": ["id"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "value": {"type": "number"}}}
    if k == "concept":
        return {"title": "Concept", **concept}
    if k == "region":
        return {"title": "Region", "type": "object", "required": ["box"], "properties": {
            "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
            "concepts": {"type": "array", "items": concept}}}
    if k == "frame":
        return {"title": "Frame", "type": "object", "required": ["image"], "properties": {
            "image": schema(TypeNode("image")), "time": {"type": "number"}}}
    if k == "dataclass":
        return {"title": node.name, "type": "object", "required": [n for n, _ in node.fields],
                "properties": {n: schema(t) for n, t in node.fields}, "additionalProperties": False}
    return {}


def result_schema(node: TypeNode) -> dict:
    """The JSON Schema of a result (images come back with their format, arrays with data)."""
    if node.kind in ("image",):
        return {"title": "PIL.Image.Image", "type": "object", "required": ["base64", "format"],
                "properties": {"base64": {"type": "string"}, "format": {"type": "string"},
                               "width": {"type": "integer"}, "height": {"type": "integer"}}}
    if node.kind == "bytes":
        return {"type": "object", "required": ["base64"], "properties": {"base64": {"type": "string"}}}
    return schema(node)


def method_schema(spec: MethodSpec) -> dict:
    """A method's parameters and result as JSON Schema, with its call shape."""
    params = [p for p in spec.params if not p.stream]
    out = {
        "name": spec.name,
        "shape": spec.shape,
        "doc": spec.doc,
        "signature": spec.signature_text,
        "parameters": {
            "type": "object",
            "properties": {p.name: {**schema(p.type), **({"default": _default(p)} if p.has_default else {})}
                           for p in params},
            "required": [p.name for p in params if not p.has_default],
            "additionalProperties": False,
        },
        "result": result_schema(spec.returns),
    }
    stream = spec.stream_param
    if stream is not None:
        out["stream_items"] = {"name": stream.name, **schema(stream.type)}
    if spec.openai:
        out["openai"] = spec.openai
    return out


def _default(p: Any) -> Any:
    from ..model.codec import encoder as value_encoder

    try:
        return to_json(value_encoder(p.type)(p.default))
    except Exception:  # a default with no JSON form (an image): shown as absent
        return None
