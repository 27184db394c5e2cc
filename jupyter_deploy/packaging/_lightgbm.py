"""LightGBM models (a ``Booster``, or a scikit-learn wrapper such as ``LGBMClassifier``), saved
in LightGBM's own text format. A classifier's labels are kept in model.py: LightGBM's file holds
the booster, which gives probabilities."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._common import Inputs, Method, Plan, inputs_for, output_kind


def matches(obj: Any) -> bool:
    return any(c.__module__.split(".")[0] == "lightgbm" for c in type(obj).__mro__)


def _booster(obj: Any) -> Any:
    return obj if type(obj).__name__ == "Booster" else obj.booster_


def inputs(obj: Any, sample: Any) -> Inputs:
    if type(obj).__name__ == "Booster":
        names = obj.feature_name()
        unnamed = all(re.fullmatch(r"Column_\d+", n) for n in names)
        return inputs_for(sample, None if unnamed else names, obj.num_feature())
    return inputs_for(sample, getattr(obj, "feature_names_in_", None), getattr(obj, "n_features_in_", None))


def plan(obj: Any, given: Inputs, checkpoint: Path) -> Plan:
    _booster(obj).save_model(str(checkpoint / "model.txt"))
    checked = given.checked()
    load = ['self.booster = lightgbm.Booster(model_file=str(checkpoint / "model.txt"))']
    constants: list[str] = []
    outputs: dict[str, Any] = {}
    sample = given.sample
    classes = getattr(obj, "classes_", None) if type(obj).__name__ != "Booster" else None
    if classes is not None:
        labels = output_kind(classes)
        constants = ["#: The classifier's labels, in the order of predict_proba's columns.",
                     f"CLASSES = np.array({classes.tolist()!r})"]
        pick = "CLASSES[self.predict_proba(X).argmax(axis=1)]"
        methods = {
            "predict": Method(labels, [f"return [str(v) for v in {pick}]" if labels == "list[str]" else
                                       f"return {pick}"], "Class labels, one per row."),
            "predict_proba": Method("np.ndarray", [
                f"p = self.booster.predict({checked})",
                "return np.column_stack([1 - p, p]) if p.ndim == 1 else p  # binary: the positive class's"],
                "Class probabilities, one row per input row, columns in the order of CLASSES."),
        }
        if sample is not None:
            outputs = {"predict": obj.predict(sample), "predict_proba": obj.predict_proba(sample)}
    else:
        methods = {"predict": Method("np.ndarray", [f"return self.booster.predict({checked})"],
                                     "Predictions, one per row.")}
        if sample is not None:
            outputs = {"predict": obj.predict(sample)}
    return Plan("LightGBM", type(obj).__name__, ["import lightgbm"], load, methods, ["lightgbm"], constants,
                ["1/checkpoint/model.txt: saved with LightGBM's save_model"], outputs)
