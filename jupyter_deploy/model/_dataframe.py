"""pandas DataFrames on the wire, column by column, without pickle.

Numeric and bool columns travel as raw arrays (dtype kept), text columns as
strings with a missing-value mask, datetimes as integers in their unit (time
zone kept), categoricals as their categories plus codes. The index travels as
one more column (a RangeIndex as start, stop, step). Other column dtypes and
MultiIndexes are refused with an error naming the column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..proto import runner_pb2 as pb

_NAT = np.iinfo(np.int64).min


def _mismatch(detail: str) -> Exception:
    from .codec import Mismatch

    return Mismatch("pandas.DataFrame", None, detail)


def encode_dataframe(df: Any) -> pb.DataFrame:
    if not isinstance(df, pd.DataFrame):
        from .codec import Mismatch

        raise Mismatch("pandas.DataFrame", df)
    if isinstance(df.columns, pd.MultiIndex) or isinstance(df.index, pd.MultiIndex):
        raise _mismatch("DataFrames with a MultiIndex are not supported; call reset_index() first")
    columns = [_encode_column(label, df.iloc[:, i]) for i, label in enumerate(df.columns)]
    return pb.DataFrame(columns=columns, index=_encode_column(df.index.name, df.index))


def _label(label: Any) -> pb.Value:
    from .codec import _encode_json

    if isinstance(label, (np.integer, np.floating)):
        label = label.item()
    if label is not None and not isinstance(label, (str, int, float, bool)):
        raise _mismatch(f"column label {label!r} is not a str, int, float or bool")
    return _encode_json(label)


def _encode_column(label: Any, data: Any) -> pb.Column:
    col = pb.Column(name=_label(label))
    if isinstance(data, pd.RangeIndex):
        col.range.CopyFrom(pb.RangeIndex(start=data.start, stop=data.stop, step=data.step))
        return col
    dtype = data.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cat = data.array if isinstance(data, pd.Series) else data.values
        col.categorical.CopyFrom(pb.Categorical(
            categories=_encode_column(None, pd.Index(cat.categories)),
            codes=_array(np.asarray(cat.codes)), ordered=bool(cat.ordered)))
    elif isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        index = pd.DatetimeIndex(data)
        unit = index.unit  # not index.values: pandas 3.1 deprecates it for tz-aware data
        col.datetimes.CopyFrom(pb.Datetimes(values=index.asi8.tolist(), unit=unit,
                                            tz=str(index.tz) if index.tz is not None else ""))
    elif isinstance(dtype, pd.StringDtype) or dtype == object:
        values = np.asarray(data, dtype=object)
        missing = pd.isna(values)
        if not all(isinstance(v, str) for v in values[~missing]):
            bad = next(v for v in values[~missing] if not isinstance(v, str))
            raise _mismatch(f"column {label!r} holds {type(bad).__name__} {bad!r}; object columns "
                            "must hold only str (or missing values)")
        col.strings.CopyFrom(pb.Strings(
            values=[v if isinstance(v, str) else "" for v in values],
            missing=missing.tolist() if missing.any() else [],
            dtype="object" if dtype == object else f"{dtype.name}:{dtype.storage}"))
    elif isinstance(dtype, np.dtype) and f"{dtype.kind}{dtype.itemsize}" in _array_dtypes():
        col.array.CopyFrom(_array(np.asarray(data)))
    else:
        raise _mismatch(f"column {label!r} has dtype {dtype}, which is not supported (use numeric, "
                        "bool, string, datetime or category columns)")
    return col


def _array_dtypes() -> frozenset[str]:
    from .codec import ARRAY_DTYPES

    return ARRAY_DTYPES


def _array(a: np.ndarray) -> pb.NDArray:
    return pb.NDArray(dtype=a.dtype.str, shape=a.shape, data=np.ascontiguousarray(a).tobytes())


def decode_dataframe(msg: pb.DataFrame) -> pd.DataFrame:
    from .codec import _decode_json

    try:
        index = _decode_column(msg.index, as_index=True) if msg.HasField("index") else None
        labels = [_decode_json(c.name) for c in msg.columns]
        # Each column as a Series of its own dtype: from a bare object array of strings,
        # pandas 3 would infer its str dtype.
        data = {i: pd.Series(v, index=index, dtype=v.dtype, copy=False)
                for i, v in enumerate(_decode_column(c, as_index=False) for c in msg.columns)}
        df = pd.DataFrame(data, index=index)
        if len(data) == 0 and index is None:
            df = pd.DataFrame()
    except (ValueError, TypeError, KeyError) as e:  # parts that do not fit together
        raise _mismatch(f"cannot rebuild the DataFrame: {e}") from None
    # With no labels, pandas' own empty columns (what DataFrame() and DataFrame(index=...) have).
    df.columns = pd.Index(labels) if labels else pd.RangeIndex(0)
    return df


def _decode_column(col: pb.Column, as_index: bool) -> Any:
    from .codec import _decode_json, _decode_ndarray

    name = _decode_json(col.name) if col.HasField("name") else None
    which = col.WhichOneof("data")
    if which == "range":
        return pd.RangeIndex(col.range.start, col.range.stop, col.range.step, name=name)
    if which == "array":
        values: Any = _decode_ndarray(col.array)
    elif which == "strings":
        s = col.strings
        obj = np.array(list(s.values), dtype=object)
        if s.missing:
            if len(s.missing) != len(obj):
                raise _mismatch("a string column's missing mask has the wrong length")
            obj[np.array(s.missing, dtype=bool)] = None
        if s.dtype == "object":
            values = obj
        else:
            kind, _, storage = s.dtype.partition(":")
            try:
                dtype = pd.StringDtype(storage=storage or None,
                                       na_value=np.nan if kind == "str" else pd.NA)
            except (ValueError, ImportError, TypeError) as e:
                raise _mismatch(f"cannot rebuild string dtype {s.dtype!r}: {e}") from None
            values = pd.array(obj, dtype=dtype)
    elif which == "datetimes":
        d = col.datetimes
        if d.unit not in ("s", "ms", "us", "ns"):
            raise _mismatch(f"unknown datetime unit {d.unit!r}")
        arr = np.array(d.values, dtype=np.int64).view(f"datetime64[{d.unit}]")
        idx = pd.DatetimeIndex(arr)
        values = idx.tz_localize("UTC").tz_convert(d.tz) if d.tz else idx
    elif which == "categorical":
        c = col.categorical
        categories = _decode_column(c.categories, as_index=True)
        values = pd.Categorical.from_codes(_decode_ndarray(c.codes), categories=categories,
                                           ordered=c.ordered)
    else:
        raise _mismatch("a DataFrame column carries no data")
    if as_index:
        return pd.Index(values, name=name, dtype=values.dtype)
    return values if not isinstance(values, pd.Index) else values.array
