"""MLflow model directories (an ``MLmodel`` file with the ``python_function`` flavour), served
through ``mlflow.pyfunc`` in the replica's environment.

The method is ``predict(data)``, typed from the model's signature where it has one: a
column-based input is a ``pandas.DataFrame`` whose columns and types are checked on every
call, a tensor input a ``numpy.ndarray`` (dtype and, where fixed, shape checked); without a
signature, JSON-like data goes to ``pyfunc.predict`` as it is. The directory's
``requirements.txt`` builds the replica's environment (``mlflow`` in it is served by an
installed ``mlflow-skinny`` of that version, which is all pyfunc needs). The directory is kept
under ``1/mlflow_model/``, unchanged. The MLmodel file is read as YAML: packaging imports no mlflow.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..errors import ModelDefinitionError

#: MLflow's column types as the dtypes check_frame compares against (None: not checked).
_COLUMN_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
                  "boolean": "bool", "string": "str", "datetime": "datetime64[ns]", "binary": None}

_MODEL_PY = '''"""The MLflow model in mlflow_model/ (python_function flavour, unchanged), served by
jupyter_deploy through mlflow.pyfunc.
"""

from pathlib import Path
{typing}
import numpy as np
import pandas as pd

from jupyter_deploy import ModelClass
from jupyter_deploy.packaging.runtime import {runtime}
{constants}

class {name}(ModelClass):
    def load_model(self):
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(str(Path(__file__).parent / "mlflow_model"))

    @ModelClass.method
    def predict(self, data: {param}) -> {returns}:
        """The model's predictions (pyfunc's predict)."""
        return {body}
'''


def _signature(mlmodel: dict, key: str) -> list | None:
    text = (mlmodel.get("signature") or {}).get(key)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def convert(src: Path, dest: Path, model_id: str) -> None:
    """Write the served folder for the MLflow model directory ``src`` into ``dest``."""
    import yaml

    from ..config import default_config, dump_config
    from ..packaging._common import class_name

    try:
        mlmodel = yaml.safe_load((src / "MLmodel").read_text()) or {}
    except yaml.YAMLError as e:
        raise ModelDefinitionError(f"{src / 'MLmodel'}: not valid YAML ({e})") from None
    flavors = mlmodel.get("flavors") or {}
    if "python_function" not in flavors:
        raise ModelDefinitionError(f"{src / 'MLmodel'}: no python_function flavour (it has "
                                   f"{', '.join(flavors) or 'none'}); jupyter_deploy serves MLflow models "
                                   "through mlflow.pyfunc")
    inputs, outputs = _signature(mlmodel, "inputs"), _signature(mlmodel, "outputs")
    constants, runtime = "", ["jsonable"]
    if inputs and all(spec.get("type") != "tensor" for spec in inputs):
        columns = {spec["name"]: _COLUMN_DTYPES.get(spec.get("type", ""))
                   for spec in inputs if spec.get("required", True) and "name" in spec}
        constants = "\n#: The model signature's columns: every call is checked against them.\nCOLUMNS = {\n" + "".join(
            f"    {name!r}: {dtype!r},\n" for name, dtype in columns.items()) + "}\n"
        param, checked = "pd.DataFrame", 'check_frame(data, COLUMNS, "data")'
        runtime.append("check_frame")
    elif inputs and len(inputs) == 1:
        spec = inputs[0]["tensor-spec"]
        shape = tuple(spec.get("shape", [])[1:])
        shape_text = None if any(d < 0 for d in shape) else shape
        constants = (f"\n#: The model signature's tensor: dtype and shape after the first axis.\n"
                     f"DTYPE, SHAPE = {spec.get('dtype')!r}, {shape_text!r}\n")
        param, checked = "np.ndarray", 'check_array(data, DTYPE, SHAPE, "data")'
        runtime.append("check_array")
    else:
        param, checked = "Any", "data"
    if outputs and (len(outputs) == 1):
        returns, body = "np.ndarray", f"as_array(self.model.predict({checked}))"
        runtime.append("as_array")
    elif outputs:
        returns, body = "pd.DataFrame", f"pd.DataFrame(self.model.predict({checked}))"
    else:
        returns, body = "Any", f"jsonable(self.model.predict({checked}))"
    if "jsonable" not in body:
        runtime.remove("jsonable")
    uses_any = "Any" in (param, returns)
    shutil.copytree(src, dest / "1" / "mlflow_model", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "1" / "model.py").write_text(_MODEL_PY.format(
        name=class_name(model_id), typing="from typing import Any\n" if uses_any else "",
        runtime=", ".join(sorted(runtime)), constants=constants, param=param, returns=returns, body=body))
    (dest / "requirements.txt").write_text(_requirements(src))
    (dest / "config.yaml").write_text("# An MLflow model (python_function flavour), served by jupyter_deploy "
                                      "through mlflow.pyfunc.\n" + dump_config(default_config(model_id)))


def _requirements(src: Path) -> str:
    """The directory's requirements.txt, ``mlflow==X`` served by an installed mlflow-skinny."""
    import importlib.metadata

    path = src / "requirements.txt"
    if not path.is_file():
        return "mlflow-skinny\n"

    def installed(dist: str) -> bool:
        try:
            importlib.metadata.version(dist)
            return True
        except importlib.metadata.PackageNotFoundError:
            return False

    skinny = installed("mlflow-skinny") and not installed("mlflow")
    lines = []
    for line in path.read_text().splitlines():
        if skinny and re.match(r"^\s*mlflow\s*(==|>=|~=|$)", line):
            line = re.sub(r"^\s*mlflow", "mlflow-skinny", line) + "  # pyfunc needs only the skinny package"
        lines.append(line)
    return "\n".join(lines) + "\n"
