"""XGBoost models (a ``Booster``, or a scikit-learn wrapper such as ``XGBClassifier``), saved
in XGBoost's own JSON format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import Inputs, Method, Plan, inputs_for, output_kind


def matches(obj: Any) -> bool:
    return any(c.__module__.split(".")[0] == "xgboost" for c in type(obj).__mro__)


def _is_booster(obj: Any) -> bool:
    return type(obj).__name__ == "Booster"


def inputs(obj: Any, sample: Any) -> Inputs:
    if _is_booster(obj):
        return inputs_for(sample, obj.feature_names, obj.num_features())
    return inputs_for(sample, getattr(obj, "feature_names_in_", None), getattr(obj, "n_features_in_", None))


def plan(obj: Any, given: Inputs, checkpoint: Path) -> Plan:
    obj.save_model(checkpoint / "model.json")
    checked = given.checked()
    categorical = given.kind == "dataframe" and "category" in (given.columns or {}).values()
    outputs: dict[str, Any] = {}
    if _is_booster(obj):
        load = ['self.model = xgboost.Booster(model_file=str(checkpoint / "model.json"))']
        options = ", enable_categorical=True" if categorical else ""
        methods = {"predict": Method("np.ndarray", [f"return self.model.predict(xgboost.DMatrix({checked}{options}))"],
                                     "The booster's predictions, one per row.")}
        if given.sample is not None:
            import xgboost

            outputs["predict"] = obj.predict(xgboost.DMatrix(given.sample, enable_categorical=categorical))
    else:
        cls = type(obj).__name__
        load = [f"self.model = xgboost.{cls}()", 'self.model.load_model(checkpoint / "model.json")']
        methods = {}
        for name, doc in (("predict", "Predictions, one per row."),
                          ("predict_proba", "Class probabilities, one row per input row.")):
            if not hasattr(obj, name):
                continue
            returns = "np.ndarray"
            if given.sample is not None:
                outputs[name] = getattr(obj, name)(given.sample)
                returns = output_kind(outputs[name])
            call = f"self.model.{name}({checked})"
            body = f"return [str(v) for v in {call}]" if returns == "list[str]" else f"return as_array({call})"
            methods[name] = Method(returns, [body], doc)
    return Plan("XGBoost", type(obj).__name__, ["import xgboost"], load, methods, ["xgboost"], [],
                ["1/checkpoint/model.json: saved with XGBoost's save_model"], outputs, extra_runtime=["as_array"])
