"""What the ``model.py`` that :func:`jupyter_deploy.package` writes imports: input checks, the
stored example, and the comparison its ``test()`` makes.

It needs numpy (and pandas for tables) and nothing of the frameworks, so a model folder
stays readable: the framework calls are in the generated file itself.

Example::

    from jupyter_deploy.packaging.runtime import check_frame

    COLUMNS = {"age": "int64", "city": "str"}
    X = check_frame(X, COLUMNS)      # InputError naming a missing or mistyped column
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError

#: rtol and atol of the comparison ``test()`` makes (float results may differ in the last bits
#: between a notebook and a replica: another BLAS thread count, another CPU).
RTOL, ATOL = 1e-5, 1e-8


def _family(dtype: Any) -> str:
    """A dtype's family: what a column may be given as in place of another of the same family."""
    import numpy as np
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_complex_dtype(dtype):
        return "complex"
    if pd.api.types.is_string_dtype(dtype) or dtype == np.dtype(object):
        return "str"
    return str(dtype)


#: Families a value may come in for each expected family (ints are fine where floats are).
_ACCEPTS = {"float": {"float", "int"}, "complex": {"complex", "float", "int"},
            "category": {"category", "str"}}


def check_frame(X: Any, columns: dict[str, str | None], param: str = "X") -> Any:
    """``X`` with exactly ``columns`` (name -> dtype, or None for any), in that order.

    Raises ``InputError`` naming each missing column, or the first column whose dtype
    does not fit (an int column where floats were trained is cast, not refused).
    Columns beyond ``columns`` are dropped.

    Example::

        check_frame(df, {"sepal length (cm)": "float64"})
    """
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        raise InputError(f"{param}: expected a pandas.DataFrame with columns {', '.join(map(repr, columns))}, "
                         f"got {type(X).__name__}")
    missing = [name for name in columns if name not in X.columns]
    if missing:
        raise InputError(f"{param}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))} (expected {', '.join(map(repr, columns))})")
    out = X.loc[:, list(columns)]
    for name, dtype in columns.items():
        if dtype is None:
            continue
        expected = pd.api.types.pandas_dtype(dtype)
        have, want = _family(out[name].dtype), _family(expected)
        if have not in _ACCEPTS.get(want, {want}):
            raise InputError(f"{param}: column {name!r} has dtype {out[name].dtype}, expected {dtype}")
        if have != want or (want in ("int", "float", "complex") and out[name].dtype != expected):
            out[name] = out[name].astype(expected)
    return out


def check_array(X: Any, dtype: str | None, shape: tuple[int, ...] | None, param: str = "X") -> Any:
    """``X`` as an ndarray of ``dtype`` whose shape after the first axis is ``shape``.

    ``None`` leaves that part unchecked. Raises ``InputError`` saying what was expected;
    a value that converts without loss (ints where floats are expected) is converted.

    Example::

        check_array(x, "float64", (4,))    # rows of 4 features
    """
    import numpy as np

    if not isinstance(X, np.ndarray):
        raise InputError(f"{param}: expected a numpy.ndarray, got {type(X).__name__}")
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        rows = f"(n, {', '.join(map(str, shape))})" if len(shape) != 1 else f"(n, {shape[0]})"
        raise InputError(f"{param}: expected shape {rows}, got {X.shape}")
    if dtype is not None and X.dtype != np.dtype(dtype):
        if not np.can_cast(X.dtype, dtype, casting="same_kind"):
            raise InputError(f"{param}: expected dtype {dtype}, got {X.dtype}")
        X = X.astype(dtype)
    return X


def as_array(value: Any) -> Any:
    """A framework's result as a plain ndarray (a sparse matrix made dense, a DataFrame's values)."""
    import numpy as np

    if hasattr(value, "toarray"):
        value = value.toarray()
    return np.asarray(value)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain Python (what a JSON-like result may hold)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and hasattr(value, "to_dict") and hasattr(value, "columns"):
        return jsonable(value.to_dict(orient="records"))
    if module in ("numpy", "pandas") and hasattr(value, "tolist"):
        return value.tolist()
    return value


def read_value(path: str | Path, annotation: Any) -> Any:
    """A value stored by ``package()`` (the codec's bytes of it), decoded as ``annotation``.

    Example::

        X = read_value(model_path / "1" / "example" / "input.pb", pandas.DataFrame)
    """
    from ..model.codec import decode_value
    from ..model.signature import type_node
    from ..proto import runner_pb2 as pb

    node = type_node(annotation, str(path))
    return decode_value(node, pb.Value.FromString(Path(path).read_bytes()), str(path))


def write_value(path: str | Path, annotation: Any, value: Any) -> None:
    """Store ``value`` for :func:`read_value` (through the codec: nothing is pickled)."""
    from ..model.codec import encode_value
    from ..model.signature import type_node

    Path(path).write_bytes(encode_value(type_node(annotation, str(path)), value,
                                        str(path)).SerializeToString())


def assert_close(actual: Any, expected: Any, what: str) -> None:
    """Fail (AssertionError) unless ``actual`` equals ``expected``: numbers (in arrays, lists and
    dicts too) within RTOL/ATOL, the rest exactly; the message says where they differ."""
    import numpy as np

    if isinstance(expected, np.ndarray):
        actual = np.asarray(actual)
        if actual.shape != expected.shape:
            raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
        if expected.dtype.kind in "biufc":
            bad = ~np.isclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
        else:
            bad = actual != expected
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(f"{what}: {int(bad.sum())} of {expected.size} values differ from the "
                                 f"notebook's, first at {first}: {actual[first]!r} != {expected[first]!r}")
        return
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        if not np.isclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True):
            raise AssertionError(f"{what}: {actual!r} differs from the notebook's {expected!r}")
        return
    if isinstance(expected, dict) and isinstance(actual, dict) and expected.keys() == actual.keys():
        for key in expected:
            assert_close(actual[key], expected[key], f"{what}[{key!r}]")
        return
    if (isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple))
            and len(actual) == len(expected)):
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{what}[{i}]")
        return
    if actual != expected:
        raise AssertionError(f"{what}: {actual!r} differs from the notebook's {expected!r}")
