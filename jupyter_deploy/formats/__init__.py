"""Other platforms' model packages, and exported ZIPs, turned into ordinary model folders.

``Client.upload_model``, ``Client.deploy`` and ``jupyter-deploy upload`` pass every path
through :func:`as_model_folder`, on the client, so the daemon only ever sees an ordinary model
folder. It recognizes:

- a jupyter_deploy model folder (``1/model.py``): as it is;
- a Clarifai model folder (``1/model.py`` importing ``clarifai.runners``): served without the
  clarifai package, its methods, parameter names and types carried over;
- an MLflow model directory (``MLmodel``, ``python_function`` flavour);
- an Oracle ADS model artifact (``score.py`` and ``runtime.yaml``);
- a Hopsworks predictor (a script with ``class Predict``, the model files beside it);
- any of these as a ZIP, and a version exported with ``Model.export("x.zip")``.

A foreign package becomes a generated folder under ``$JUPYTER_DEPLOY_HOME/imported_models/``
whose ``1/model.py`` wraps the package's own code, unchanged, copied beside it.

Example::

    folder, model_id = as_model_folder(Path("exports/sentiment.zip"), None)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelDefinitionError
from ._zip import MANIFEST, check_export, extract, read_manifest

__all__ = ["LOOKED_FOR", "as_model_folder", "detect"]

LOOKED_FOR = ("1/model.py (a jupyter_deploy or Clarifai model folder), MLmodel (an MLflow model), score.py "
              "with runtime.yaml (an Oracle ADS artifact), a script with class Predict (a Hopsworks predictor), "
              "or a ZIP of one of these (Model.export writes one)")
_CLARIFAI = re.compile(r"^\s*(from|import)\s+clarifai\b", re.MULTILINE)
#: Hopsworks' ``class Predict:`` / ``(object)``; not a ModelClass subclass that happens to be named so.
_PREDICT = re.compile(r"^class\s+Predict\s*(\(\s*(object)?\s*\))?\s*:", re.MULTILINE)


def detect(path: Path) -> str:
    """The format of a folder (or a Hopsworks script): ``"folder"`` (ours), ``"clarifai"``,
    ``"mlflow"``, ``"ads"`` or ``"hopsworks"``; ModelDefinitionError listing what was looked for."""
    if path.is_file():
        if path.suffix == ".py" and _PREDICT.search(path.read_text(errors="replace")):
            return "hopsworks"
        raise ModelDefinitionError(f"{path}: not a model package; looked for {LOOKED_FOR}")
    model = path / "1" / "model.py"
    if model.is_file():
        return "clarifai" if _CLARIFAI.search(model.read_text(errors="replace")) else "folder"
    if (path / "MLmodel").is_file():
        return "mlflow"
    if (path / "score.py").is_file() and (path / "runtime.yaml").is_file():
        return "ads"
    if any(_PREDICT.search(p.read_text(errors="replace")) for p in sorted(path.glob("*.py"))):
        return "hopsworks"
    raise ModelDefinitionError(f"{path}: not a model folder of a format jupyter_deploy knows; looked for "
                               f"{LOOKED_FOR}")


def as_model_folder(path: Path, model_id: str | None) -> tuple[Path, str | None]:
    """An ordinary model folder for ``path`` and the model id it gets (None: its config.yaml's).

    Our own folders and ``model.py`` files come back as they are; a ZIP is unpacked (safely)
    first; a foreign package is converted. A foreign package's id is the folder's (or the
    ZIP's) name unless ``model_id`` is given.
    """
    name = path.name
    if path.is_file() and path.suffix.lower() == ".zip":
        name = path.stem
        path, exported = _unzipped(path)
        if exported:  # a version exported by Model.export: imported as it was
            return path, model_id
    elif path.is_file() and not (path.suffix == ".py" and _PREDICT.search(path.read_text(errors="replace"))):
        return path, model_id  # a model.py: the caller writes it into a folder
    kind = detect(path)
    if kind == "folder":
        return path, model_id
    if not model_id and kind == "clarifai":
        model_id = _configured_id(path)  # a Clarifai folder names its model, as ours do
    model_id = model_id or (path.stem if path.is_file() else name)
    return _convert(kind, path, model_id), model_id


def _configured_id(folder: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load((folder / "config.yaml").read_text())
        return str(data["model"]["id"]) or None
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _unzipped(zip_path: Path) -> tuple[Path, bool]:
    """``zip_path`` unpacked under the imported models (once per content), descending into a
    single top-level folder; whether it is an export (its manifest checked, then set aside so
    that the folder packs into the archive that was exported)."""
    from ..paths import home

    digest = hashlib.sha256()
    with open(zip_path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    root = home() / "imported_models"
    dest = root / f"{zip_path.stem}-{digest.hexdigest()[:16]}.unzipped"
    if not dest.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{dest.name}."))
        try:
            extract(zip_path, tmp / "files")
            manifest = read_manifest(tmp / "files")
            if manifest is not None:
                check_export(tmp / "files", manifest)
                (tmp / "files" / MANIFEST).rename(tmp / MANIFEST)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():  # (another process unpacked the same ZIP first: keep theirs)
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    files = dest / "files"
    if (dest / MANIFEST).is_file():
        return files, True
    entries = [p for p in files.iterdir() if p.name != "__MACOSX"]
    return (entries[0] if len(entries) == 1 and entries[0].is_dir() else files), False


def _convert(kind: str, src: Path, model_id: str) -> Path:
    """Write the generated model folder for a foreign package (replacing an earlier one)."""
    import importlib

    from ..config import default_config
    from ..paths import home

    default_config(model_id)  # a bad id fails before anything is written
    adapter = importlib.import_module(f"{__name__}.{kind}")
    root = home() / "imported_models"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"{model_id}.{kind}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{dest.name}."))
    try:
        adapter.convert(src, tmp, model_id)
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{dest.name}.old."))
            os.replace(dest, old / "folder")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
