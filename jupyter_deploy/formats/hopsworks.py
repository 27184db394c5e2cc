"""Hopsworks predictor scripts, served as they are.

A Hopsworks predictor is a script with ``class Predict`` (``__init__(self)``,
``predict(self, inputs)``, which may be ``async``), optionally a transformer script with
``class Transformer`` (``preprocess(self, inputs)``, ``postprocess(self, outputs)``), and the
model's files beside them. Served here as a model with one method, ``predict(payload)``: the
request's JSON (``{"instances": [...]}``, or the list of instances alone) goes through the
transformer's ``preprocess``, its instances to ``Predict.predict``, and ``{"predictions": ...}``
through ``postprocess`` back. The scripts find the model files through ``MODEL_FILES_PATH`` and
``ARTIFACT_FILES_PATH``, as on Hopsworks.

The generated folder holds the package under ``1/artifacts/``, unchanged.

Example (the generated ``1/model.py``)::

    class Churn(ModelClass):
        def load_model(self):
            self.predictor = Predictor(ARTIFACTS, "predict_churn.py", None)

        @ModelClass.method
        def predict(self, payload: Any) -> Any:
            return self.predictor.predict(payload)
"""

from __future__ import annotations

import asyncio
import inspect
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelDefinitionError
from . import _script

_CLASS = re.compile(r"^class\s+(Predict|Transformer)\s*(?:\(\s*(?:object)?\s*\))?\s*:", re.MULTILINE)


class Predictor:
    """The Hopsworks scripts in ``folder``, loaded (the predictor's ``Predict()`` made)."""

    def __init__(self, folder: Path, predictor: str, transformer: str | None = None):
        _script.set_env(MODEL_FILES_PATH=folder, ARTIFACT_FILES_PATH=folder)
        self.file = folder / predictor
        module = _script.load(self.file, "jupyter_deploy_hopsworks_")
        self.predict_obj = _script.run(self.file, "Predict()", module.Predict)
        self.transformer = None
        if transformer is not None:
            tfile = folder / transformer
            tmodule = _script.load(tfile, "jupyter_deploy_hopsworks_")
            self.transformer = _script.run(tfile, "Transformer()", tmodule.Transformer)

    def predict(self, payload: Any) -> Any:
        """``{"instances": [...]}`` in, ``{"predictions": [...]}`` out, through the transformer."""
        from ..packaging.runtime import jsonable

        if self.transformer is not None:
            payload = _awaited(self.transformer.preprocess(payload))
        if isinstance(payload, dict):
            if "instances" not in payload:
                raise InputError(f"payload: expected {{\"instances\": [...]}}, got keys {sorted(payload)}")
            instances = payload["instances"]
        elif isinstance(payload, list):
            instances = payload
        else:
            raise InputError(f"payload: expected {{\"instances\": [...]}} or a list, got {type(payload).__name__}")
        out = {"predictions": _awaited(self.predict_obj.predict(instances))}
        if self.transformer is not None:
            out = _awaited(self.transformer.postprocess(out))
        return jsonable(out)


def _awaited(value: Any) -> Any:
    return asyncio.run(value) if inspect.iscoroutine(value) else value


_MODEL_PY = '''"""The Hopsworks predictor in artifacts/{predictor} (with the files beside it, unchanged),
served by jupyter_deploy: predict() takes the request's JSON ({{"instances": [...]}}) and returns
{{"predictions": [...]}}{through}.
"""

from pathlib import Path
from typing import Any

from jupyter_deploy import ModelClass
from jupyter_deploy.formats.hopsworks import Predictor

ARTIFACTS = Path(__file__).parent / "artifacts"


class {name}(ModelClass):
    def load_model(self):
        self.predictor = Predictor(ARTIFACTS, {predictor!r}, {transformer!r})

    @ModelClass.method
    def predict(self, payload: Any) -> Any:
        """The predictions for {{"instances": [...]}}, as {{"predictions": [...]}}."""
        return self.predictor.predict(payload)
'''


def convert(src: Path, dest: Path, model_id: str) -> None:
    """Write the served folder for the Hopsworks predictor ``src`` (a folder, or the script) into ``dest``."""
    from ..config import default_config, dump_config
    from ..packaging._common import class_name

    folder = src.parent if src.is_file() else src
    scripts = [src] if src.is_file() else sorted(src.glob("*.py"))
    found: dict[str, str] = {}
    for script in scripts:
        for kind in _CLASS.findall(script.read_text(errors="replace")):
            found.setdefault(kind, script.name)
    if "Predict" not in found:
        raise ModelDefinitionError(f"{src}: no script with class Predict (a Hopsworks predictor)")
    artifacts = dest / "1" / "artifacts"
    if src.is_file():
        artifacts.mkdir(parents=True)
        shutil.copy(src, artifacts / src.name)
    else:
        shutil.copytree(folder, artifacts, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    for script in found.values():
        _script.check_syntax(artifacts / script)
    transformer = found.get("Transformer")
    (dest / "1" / "model.py").write_text(_MODEL_PY.format(
        name=class_name(model_id), predictor=found["Predict"], transformer=transformer,
        through=f", through the transformer in artifacts/{transformer}" if transformer else ""))
    requirements = folder / "requirements.txt"
    (dest / "requirements.txt").write_text(requirements.read_text() if requirements.is_file() and src.is_dir() else "")
    (dest / "config.yaml").write_text(f"# A Hopsworks predictor ({found['Predict']}), served by jupyter_deploy.\n"
                                      + dump_config(default_config(model_id)))
