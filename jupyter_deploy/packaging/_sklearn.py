"""scikit-learn estimators and pipelines: saved with skops where it can (loading runs no
arbitrary code), else with joblib (a pickle), which the config says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from ._common import Inputs, Method, Plan, inputs_for, output_kind

#: The methods served, where the estimator has them, and what each returns.
METHODS = {
    "predict": "Predictions, one per row.",
    "predict_proba": "Class probabilities, one row per input row, columns in the order of the classes.",
    "decision_function": "Decision function values, one per row.",
    "transform": "The transformed rows.",
}


def matches(obj: Any) -> bool:
    return any(c.__module__.split(".")[0] == "sklearn" for c in type(obj).__mro__)


def inputs(obj: Any, sample: Any) -> Inputs:
    return inputs_for(sample, getattr(obj, "feature_names_in_", None), getattr(obj, "n_features_in_", None))


def plan(obj: Any, given: Inputs, checkpoint: Path) -> Plan:
    names = [name for name in METHODS if hasattr(obj, name)]
    if not names:
        raise ModelDefinitionError(f"{type(obj).__name__} has none of {', '.join(METHODS)}: nothing to serve")
    serializer, imports, load, notes, constants = _save(obj, checkpoint)
    methods, outputs = {}, {}
    checked = given.checked()
    for name in names:
        returns = "np.ndarray"
        if given.sample is not None:
            outputs[name] = getattr(obj, name)(given.sample)
            if name == "predict":
                returns = output_kind(outputs[name])
        elif name == "predict" and hasattr(obj, "classes_"):
            returns = output_kind(obj.classes_)
        call = f"self.model.{name}({checked})"
        body = [f"return [str(v) for v in {call}]" if returns == "list[str]" else f"return as_array({call})"]
        methods[name] = Method(returns, body, METHODS[name])
    return Plan("scikit-learn", type(obj).__name__, imports, load, methods,
                ["sklearn", serializer], constants, notes, outputs,
                extra_runtime=["as_array"])


def _save(obj: Any, checkpoint: Path) -> tuple[str, list[str], list[str], list[str], list[str]]:
    """Write the estimator; (the serializer's module, imports, load_model lines, config notes,
    constants) to read it back."""
    why = _save_skops(obj, checkpoint / "model.skops")
    if isinstance(why, list):
        trusted = ["#: The types skops may load besides its own defaults, listed when the model was packaged."]
        trusted += ["TRUSTED = ["] + [f"    {t!r}," for t in why] + ["]"] if why else ["TRUSTED = []"]
        return ("skops", ["import skops.io"], ['self.model = skops.io.load(checkpoint / "model.skops", trusted=TRUSTED)'],
                ["1/checkpoint/model.skops: saved with skops, which loads only the types listed in "
                 "1/model.py (no code runs)"], trusted)
    import joblib

    try:
        joblib.dump(obj, checkpoint / "model.joblib")
    except Exception as e:  # noqa: BLE001 - whatever pickling raised, with why skops failed
        raise ModelDefinitionError(f"cannot save {type(obj).__name__}: {why}; joblib failed too: "
                                   f"{type(e).__name__}: {e}") from None
    return ("joblib", ["import joblib"], ['self.model = joblib.load(checkpoint / "model.joblib")'],
            ["1/checkpoint/model.joblib: a pickle (joblib), because " + why + "; loading it runs the code "
             "it names, so deploy only a file you made yourself"], [])


def _save_skops(obj: Any, path: Path) -> list[str] | str:
    """The types to trust when loading what skops wrote to ``path``, or why skops cannot save it."""
    try:
        import skops.io
    except ImportError:
        return "skops is not installed"
    try:
        skops.io.dump(obj, path)
        trusted = skops.io.get_untrusted_types(file=path)
    except Exception as e:  # noqa: BLE001 - what skops cannot save, joblib may
        path.unlink(missing_ok=True)
        return f"skops cannot save it ({type(e).__name__}: {e})"
    notebook = [t for t in trusted if t.startswith("__main__.")]
    if notebook:
        path.unlink(missing_ok=True)
        raise ModelDefinitionError(
            f"{type(obj).__name__} uses {', '.join(t.removeprefix('__main__.') for t in notebook)}, defined "
            "in the notebook: a replica cannot import it. Define it in a module the replica can import "
            "(an installed package), fit again, then package")
    try:
        skops.io.load(path, trusted=trusted)
    except Exception as e:  # noqa: BLE001 - saved but cannot be read back: joblib instead
        path.unlink(missing_ok=True)
        return f"skops saved it but cannot load it back ({type(e).__name__}: {e})"
    return trusted
