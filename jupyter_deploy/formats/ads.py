"""Oracle ADS model artifacts, served as they are.

An ADS artifact is a folder (or a ZIP) with ``score.py`` (``load_model()``, and
``predict(data, model=load_model())``), ``runtime.yaml`` (which names
``MODEL_ARTIFACT_VERSION``) and the files they load. Served here as a model with one method,
``predict(data)``, taking and returning JSON as ADS's scoring server does. The artifact is kept
under ``1/artifact/``, unchanged, so ``score.py`` finds its files beside itself.

Example (the generated ``1/model.py``)::

    class Churn(ModelClass):
        def load_model(self):
            self.score = Score(ARTIFACT)

        @ModelClass.method
        def predict(self, data: Any) -> Any:
            return self.score.predict(data)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import ModelDefinitionError
from . import _script


class Score:
    """An artifact's ``score.py``, imported (which loads its model, as in ADS)."""

    def __init__(self, folder: Path):
        self.file = folder / "score.py"
        self.module = _script.load(self.file, "jupyter_deploy_ads_score_")
        if not callable(getattr(self.module, "predict", None)):
            raise ModelDefinitionError(f"{self.file}: defines no predict(data, model=load_model())")

    def predict(self, data: Any) -> Any:
        from ..packaging.runtime import jsonable

        return jsonable(self.module.predict(data))


_MODEL_PY = '''"""The Oracle ADS model artifact in artifact/ (score.py, runtime.yaml and the files they load,
unchanged), served by jupyter_deploy: predict() takes and returns JSON, as ADS's scoring server does.
"""

from pathlib import Path
from typing import Any

from jupyter_deploy import ModelClass
from jupyter_deploy.formats.ads import Score

ARTIFACT = Path(__file__).parent / "artifact"


class {name}(ModelClass):
    def load_model(self):
        self.score = Score(ARTIFACT)  # imports score.py, which loads the model

    @ModelClass.method
    def predict(self, data: Any) -> Any:
        """score.py's predict(data)."""
        return self.score.predict(data)
'''


def convert(src: Path, dest: Path, model_id: str) -> None:
    """Write the served folder for the ADS artifact ``src`` into ``dest``."""
    import yaml

    from ..config import default_config, dump_config
    from ..packaging._common import class_name

    try:
        runtime = yaml.safe_load((src / "runtime.yaml").read_text())
    except yaml.YAMLError as e:
        raise ModelDefinitionError(f"{src / 'runtime.yaml'}: not valid YAML ({e})") from None
    version = runtime.get("MODEL_ARTIFACT_VERSION") if isinstance(runtime, dict) else None
    if version is None:
        raise ModelDefinitionError(f"{src / 'runtime.yaml'}: no MODEL_ARTIFACT_VERSION (an ADS artifact's "
                                   "runtime.yaml names it)")
    shutil.copytree(src, dest / "1" / "artifact", ignore=shutil.ignore_patterns("__pycache__", ".git"))
    _script.check_syntax(dest / "1" / "artifact" / "score.py")
    (dest / "1" / "model.py").write_text(_MODEL_PY.format(name=class_name(model_id)))
    requirements = src / "requirements.txt"
    (dest / "requirements.txt").write_text(requirements.read_text() if requirements.is_file() else "")
    (dest / "config.yaml").write_text(
        f"# An Oracle ADS model artifact (MODEL_ARTIFACT_VERSION {version}), served by jupyter_deploy; "
        "runtime.yaml's conda environment is not used: requirements.txt (if any) and this environment are.\n"
        + dump_config(default_config(model_id)))
