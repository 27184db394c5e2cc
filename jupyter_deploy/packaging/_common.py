"""What every framework's packaging shares: the input a model takes (from the sample, else from
what the object knows of its features), the plan of the ``model.py`` to write, and writing it."""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelDefinitionError

#: The first line of every model.py package() writes: package() replaces a folder only when its
#: model.py starts so (a folder a user took over, or any other, is never overwritten).
MARK = "Written by jupyter_deploy.package()"


@dataclass
class Inputs:
    """The one parameter ``X`` of the served methods: a table or an array, and what is checked."""

    kind: str  # "dataframe", "ndarray", or (a transformers pipeline's) "text", "image", "bytes"
    columns: dict[Any, str | None] | None = None  # dataframe: name -> dtype (None: not checked)
    dtype: str | None = None  # ndarray
    shape: tuple[int, ...] | None = None  # ndarray: the shape after the first axis
    sample: Any = None

    @property
    def annotation(self) -> str:
        return {"dataframe": "pd.DataFrame", "ndarray": "np.ndarray", "text": "str", "image": "Image.Image",
                "bytes": "bytes"}[self.kind]

    @property
    def param(self) -> str:
        return {"text": "text", "image": "image", "bytes": "data"}.get(self.kind, "X")

    @property
    def python_type(self) -> Any:
        if self.kind == "dataframe":
            import pandas as pd

            return pd.DataFrame
        if self.kind == "image":
            from PIL import Image

            return Image.Image
        if self.kind in ("text", "bytes"):
            return str if self.kind == "text" else bytes
        import numpy as np

        return np.ndarray

    def constants(self) -> list[str]:
        if self.kind == "dataframe":
            if not self.columns:
                return []
            lines = ["#: The columns the model was fitted on, with their dtypes: every call is checked against",
                     "#: them (a missing or mistyped column is an InputError naming it).", "COLUMNS = {"]
            lines += [f"    {name!r}: {dtype!r}," for name, dtype in self.columns.items()]
            return lines + ["}"]
        if self.dtype is None and self.shape is None:
            return []
        return ["#: The dtype and the shape after the first axis every call's array is checked against.",
                f"DTYPE, SHAPE = {self.dtype!r}, {self.shape!r}"]

    def checked(self) -> str:
        param = self.param
        if self.kind in ("text", "image", "bytes"):
            return param
        if self.kind == "dataframe":
            return f"check_frame({param}, COLUMNS)" if self.columns else param
        if self.dtype is None and self.shape is None:
            return param
        return f"check_array({param}, DTYPE, SHAPE)"

    def runtime_names(self) -> list[str]:
        if self.kind in ("text", "image", "bytes"):
            return []
        if self.kind == "dataframe":
            return ["check_frame"] if self.columns else []
        return [] if self.dtype is None and self.shape is None else ["check_array"]


def inputs_for(sample: Any, feature_names: list | None = None, n_features: int | None = None,
               default_dtype: str | None = None) -> Inputs:
    """The input of a model from its sample, else from the feature names or count it was fitted with."""
    if sample is not None:
        import numpy as np

        if _is_dataframe(sample):
            if len(sample) == 0:
                raise ValueError("sample: an empty DataFrame; give a few rows of what the model is called with")
            return Inputs("dataframe", {name: str(dtype) for name, dtype in sample.dtypes.items()}, sample=sample)
        if type(sample).__module__.startswith("torch"):
            sample = sample.detach().cpu().numpy()
        if not isinstance(sample, np.ndarray):
            if not isinstance(sample, (list, tuple)):
                raise ValueError(f"sample: expected a pandas DataFrame or a numpy array, got {type(sample).__name__}")
            sample = np.asarray(sample)
        if sample.ndim == 0 or len(sample) == 0:
            raise ValueError(f"sample: expected an array of rows (shape (n, ...)), got shape {sample.shape}")
        return Inputs("ndarray", dtype=str(sample.dtype), shape=tuple(int(d) for d in sample.shape[1:]),
                      sample=sample)
    if feature_names is not None and len(feature_names):
        return Inputs("dataframe", {str(name): None for name in feature_names})
    if n_features is not None:
        return Inputs("ndarray", dtype=default_dtype, shape=(int(n_features),))
    return Inputs("ndarray")


def _is_dataframe(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


@dataclass
class Method:
    """One served method: its return annotation and the expression it returns (``X`` is the
    checked input)."""

    returns: str
    body: list[str]
    doc: str = ""


@dataclass
class Plan:
    """What a framework's packaging decided: the model.py's parts, the pins, the notes."""

    framework: str  # as a reader knows it: "scikit-learn"
    what: str  # the object's class, e.g. "Pipeline"
    imports: list[str]
    load: list[str]  # the body of load_model (``checkpoint`` is the checkpoint folder)
    methods: dict[str, Method]
    modules: list[str]  # top-level modules whose distributions requirements.txt pins
    constants: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # config.yaml comments
    #: name -> the notebook's result of that method on the sample (for the stored example)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: name -> the annotation of that method's stored output
    output_types: dict[str, Any] = field(default_factory=dict)
    extra_runtime: list[str] = field(default_factory=list)


def output_kind(value: Any) -> str:
    """How a method returning ``value`` (the notebook's result on the sample) is annotated:
    ``np.ndarray`` for numbers, ``list[str]`` for text labels."""
    import numpy as np

    array = np.asarray(value.toarray() if hasattr(value, "toarray") else value)
    if array.dtype.kind in "biufc":
        return "np.ndarray"
    if array.dtype.kind in "UO" and all(isinstance(v, str) for v in array.ravel().tolist()):
        return "list[str]"
    raise ModelDefinitionError(f"the model's predictions are of dtype {array.dtype} (neither numbers nor "
                               "text); write a model.py by hand for it")


def pins(modules: list[str]) -> list[str]:
    """``dist==version`` for the distributions that provide ``modules``, as installed here."""
    provided = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    for module in modules:
        for dist in provided.get(module, [module]):
            try:
                out[dist] = f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
            break
    return list(out.values())


def class_name(model_id: str) -> str:
    """``"iris-clf"`` -> ``"IrisClf"``: the class of the generated model.py."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", model_id) if part)
    return name if name[:1].isalpha() else f"Model{name}"


def render(plan: Plan, inputs: Inputs, model_id: str, description: str | None,
           example_methods: list[str]) -> str:
    """The text of ``1/model.py``."""
    runtime = sorted({*inputs.runtime_names(), *plan.extra_runtime,
                      *(["assert_close", "read_value"] if example_methods else [])})
    uses_pd = inputs.kind == "dataframe" or any("pd." in m.returns for m in plan.methods.values())
    uses_any = any(m.returns == "Any" for m in plan.methods.values())
    doc = (description or f"A {plan.framework} {plan.what}, packaged from a notebook.").strip()
    lines = ['"""' + doc, "", f"{MARK} from a {plan.framework} {plan.what}; the file is yours to edit.",
             "package() replaces this folder only while the line above is here.", '"""', "",
             *(["from pathlib import Path", "from typing import Any"] if uses_any else ["from pathlib import Path"]),
             "", "import numpy as np"]
    if uses_pd:
        lines.append("import pandas as pd")
    if inputs.kind == "image":
        lines.append("from PIL import Image")
    lines += [*plan.imports, "", "from jupyter_deploy import ModelClass"]
    if runtime:
        lines.append(f"from jupyter_deploy.packaging.runtime import {', '.join(runtime)}")
    constants = inputs.constants() + ([""] if inputs.constants() and plan.constants else []) + plan.constants
    if constants:
        lines += ["", *constants]
    lines += ["", "", f"class {class_name(model_id)}(ModelClass):",
              f'    """{doc.splitlines()[0]}"""', "",
              "    def load_model(self):",
              '        checkpoint = Path(self.model_path) / "1" / "checkpoint"',
              *(f"        {line}" for line in plan.load)]
    for name, method in plan.methods.items():
        lines += ["", "    @ModelClass.method",
                  f"    def {name}(self, {inputs.param}: {inputs.annotation}) -> {method.returns}:"]
        if method.doc:
            lines.append(f'        """{method.doc}"""')
        lines += [f"        {line}" for line in method.body]
    if example_methods:
        checks = ", ".join(f'("{name}", {plan.methods[name].returns})' for name in example_methods)
        lines += ["", "    def test(self):",
                  '        """The notebook\'s results on the sample the model was packaged with, reproduced."""',
                  '        example = Path(self.model_path) / "1" / "example"',
                  f'        {inputs.param} = read_value(example / "input.pb", {inputs.annotation})',
                  f"        for name, returns in ({checks}{',' if len(example_methods) == 1 else ''}):",
                  f'            assert_close(getattr(self, name)({inputs.param}), read_value(example / f"{{name}}.pb", '
                  'returns), name)']
    return "\n".join(lines) + "\n"
