"""Open Inference Protocol tensors <-> a method's parameters and result.

A parameter maps onto a tensor of the same name when it is an ndarray (any numeric
datatype, any shape), a number or bool (one element: INT64, FP64, BOOL; any integer or
float datatype is taken), a str or bytes (one BYTES element), or a list of those (the
tensor's elements, flattened). A result maps the same way onto the tensor ``output``; a
dataclass or a ``dict`` result onto one tensor per field or key. Anything else cannot map:
the call is answered 400 naming the parameter (or ``return``).
"""

from __future__ import annotations

import struct
from typing import Any

from ..model.signature import MethodSpec, TypeNode
from ..proto import runner_pb2 as pb
from ._routes import GatewayError

#: Datatype -> numpy dtype string (BYTES: object arrays of bytes).
DTYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
          "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
          "BYTES": "O"}
_SCALAR = {"str": "BYTES", "bytes": "BYTES", "int": "INT64", "float": "FP64", "bool": "BOOL"}
_INTS = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
_NUMBERS = {"ndarray", "int", "float", "bool"}


def datatype_of(dtype: Any) -> str:
    import numpy as np

    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "BOOL"
    if dt.kind in "iu":
        return f"{'U' if dt.kind == 'u' else ''}INT{dt.itemsize * 8}"
    if dt.kind == "f":
        return f"FP{dt.itemsize * 8}"
    return "BYTES"


def _inner(node: TypeNode) -> TypeNode:
    return node.args[0] if node.kind == "optional" else node


def param_tensor(node: TypeNode) -> tuple[str, list[int]] | None:
    """``(datatype, shape)`` of the tensor a parameter (or result) of type ``node`` maps onto."""
    node = _inner(node)
    if node.kind == "ndarray":
        return "FP32", [-1]
    if node.kind in _SCALAR:
        return _SCALAR[node.kind], [1]
    if node.kind == "list" and _inner(node.args[0]).kind in _SCALAR:
        return _SCALAR[_inner(node.args[0]).kind], [-1]
    return None


def metadata(spec: MethodSpec) -> tuple[list[dict], list[dict]]:
    """The method's inputs and outputs as tensor metadata; GatewayError 400 if one cannot map."""
    inputs = []
    for p in spec.params:
        mapped = param_tensor(p.type) if not p.stream else None
        if mapped is None:
            raise _unmappable(spec, p.name, p.type)
        inputs.append({"name": p.name, "datatype": mapped[0], "shape": mapped[1]})
    ret = _inner(spec.returns)
    if ret.kind == "dataclass":
        fields = ret.fields
    else:
        fields = (("output", ret),)
    outputs = []
    for name, node in fields:
        mapped = param_tensor(node)
        if mapped is None and node.kind not in ("dict", "json"):
            raise _unmappable(spec, "return", spec.returns)
        outputs.append({"name": name, "datatype": mapped[0] if mapped else "BYTES", "shape": mapped[1] if mapped
                        else [-1]})
    return inputs, outputs


def _unmappable(spec: MethodSpec, name: str, node: TypeNode) -> GatewayError:
    return GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() {'returns' if name == 'return' else 'parameter'} "
                        f"{'' if name == 'return' else repr(name) + ' '}{node} has no Open Inference Protocol tensor "
                        f"form (ndarray, str, bytes, int, float, bool or a list of them); call it through "
                        f"/v1/deployments/.../methods/{spec.name}", parameter=name)


# ------------------------------------------------------------------ tensors in


def array(datatype: str, shape: list[int], data: Any, name: str) -> Any:
    """A tensor's elements as a numpy array of ``shape``: from JSON data (nested or flat), or raw bytes."""
    import numpy as np

    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': unknown datatype {datatype!r} "
                           f"(one of {', '.join(DTYPES)})", parameter=name)
    count = 1
    for n in shape:
        count *= n
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            if datatype == "BYTES":
                arr = np.array(unpack_bytes(bytes(data), name), dtype=object)
            else:
                arr = np.frombuffer(data, dtype=dtype)
        elif datatype == "BYTES":
            flat = np.array(data, dtype=object).reshape(-1)
            arr = np.array([x.encode() if isinstance(x, str) else x for x in flat], dtype=object)
        else:
            arr = np.asarray(data, dtype=dtype)
        return arr.reshape(shape)
    except (ValueError, TypeError) as e:
        raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': its data does not fit datatype {datatype} and "
                           f"shape {shape} ({count} elements): {e}", parameter=name) from None


def unpack_bytes(data: bytes, name: str) -> list[bytes]:
    """BYTES elements in binary form: each a 4-byte little-endian length, then its bytes."""
    out, i = [], 0
    while i < len(data):
        if i + 4 > len(data):
            raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': truncated BYTES data", parameter=name)
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def to_value(spec: MethodSpec, name: str, datatype: str, arr: Any) -> pb.Value:
    """The runner Value of parameter ``name`` from its tensor."""
    param = next((p for p in spec.params if p.name == name and not p.stream), None)
    if param is None:
        known = ", ".join(p.name for p in spec.params if not p.stream)
        raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() has no input '{name}' (inputs: {known})",
                           parameter=name)
    node = _inner(param.type)
    kind = node.kind
    if param_tensor(node) is None:
        raise _unmappable(spec, name, param.type)
    if kind == "ndarray":
        if datatype == "BYTES":
            raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': an ndarray takes a numeric or BOOL "
                               "tensor, not BYTES", parameter=name)
        import numpy as np

        contiguous = np.ascontiguousarray(arr)
        return pb.Value(ndarray=pb.NDArray(dtype=contiguous.dtype.str, shape=contiguous.shape,
                                           data=contiguous.tobytes()))
    flat = arr.reshape(-1).tolist()
    if kind == "list":
        item = _inner(node.args[0]).kind
        return pb.Value(list=pb.ListValue(items=[_scalar(spec, name, item, datatype, x) for x in flat]))
    if len(flat) != 1:
        raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': {spec.name}() takes one {kind} here, "
                           f"got a tensor of {len(flat)} elements", parameter=name)
    return _scalar(spec, name, kind, datatype, flat[0])


def _scalar(spec: MethodSpec, name: str, kind: str, datatype: str, x: Any) -> pb.Value:
    def wrong() -> GatewayError:
        return GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': {spec.name}() takes {kind} "
                            f"({_SCALAR[kind]}), got a {datatype} tensor", parameter=name)

    if kind in ("str", "bytes"):
        if datatype != "BYTES":
            raise wrong()
        raw = x if isinstance(x, bytes) else str(x).encode()
        if kind == "bytes":
            return pb.Value(bytes=raw)
        try:
            return pb.Value(str=raw.decode())
        except UnicodeDecodeError:
            raise GatewayError(400, "INVALID_ARGUMENT", f"input '{name}': not UTF-8 text", parameter=name) from None
    if kind == "bool":
        if datatype != "BOOL":
            raise wrong()
        return pb.Value(bool=bool(x))
    if kind == "int":
        if datatype not in _INTS:
            raise wrong()
        return pb.Value(int=int(x))
    if datatype not in _INTS and not datatype.startswith("FP"):  # float
        raise wrong()
    return pb.Value(float=float(x))


# ------------------------------------------------------------------ tensors out


def outputs(spec: MethodSpec, value: pb.Value) -> list[tuple[str, str, list[int], Any]]:
    """``(name, datatype, shape, numpy array)`` of each output tensor of a result."""
    which = value.WhichOneof("kind")
    if which in ("fields", "map"):
        return [_tensor(spec, e.key, e.value) for e in getattr(value, which).entries]
    return [_tensor(spec, "output", value)]


def _tensor(spec: MethodSpec, name: str, value: pb.Value) -> tuple[str, str, list[int], Any]:
    import numpy as np

    which = value.WhichOneof("kind")
    if which == "ndarray":
        a = value.ndarray
        arr = np.frombuffer(a.data, dtype=np.dtype(a.dtype)).reshape(tuple(a.shape))
        if arr.dtype.kind == "c":
            raise _unmappable(spec, "return", spec.returns)
        return name, datatype_of(arr.dtype), list(arr.shape), arr
    items = list(value.list.items) if which == "list" else [value]
    kinds = {v.WhichOneof("kind") for v in items}
    if which == "list" and not items:
        return name, "FP64", [0], np.zeros(0)
    if kinds <= {"str", "bytes"}:
        data = [v.str.encode() if v.WhichOneof("kind") == "str" else v.bytes for v in items]
        return name, "BYTES", [len(data)], np.array(data, dtype=object)
    if kinds <= {"int", "float", "bool"} and len(kinds) == 1:
        kind = kinds.pop()
        dtype = {"int": "<i8", "float": "<f8", "bool": "?"}[kind]
        arr = np.array([getattr(v, kind) for v in items], dtype=dtype)
        return name, datatype_of(arr.dtype), [len(items)], arr
    if kinds == {"int", "float"}:
        arr = np.array([v.float if v.WhichOneof("kind") == "float" else v.int for v in items], dtype="<f8")
        return name, "FP64", [len(items)], arr
    raise GatewayError(400, "INVALID_ARGUMENT", f"{spec.name}() returned {which} for '{name}', which has no "
                       f"Open Inference Protocol tensor form; call it through "
                       f"/v1/deployments/.../methods/{spec.name}", parameter="return")


def json_data(datatype: str, arr: Any) -> list:
    """A tensor's elements, flattened, as JSON data."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        out = []
        for x in flat.tolist():
            try:
                out.append(x.decode())
            except UnicodeDecodeError:  # not text: send it with binary_data instead
                out.append(x.decode("latin-1"))
        return out
    return flat.tolist()


def raw_data(datatype: str, arr: Any) -> bytes:
    """A tensor's elements in binary form (row-major; BYTES length-prefixed)."""
    import numpy as np

    if datatype == "BYTES":
        return pack_bytes(list(arr.reshape(-1)))
    return np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[datatype])).tobytes()
