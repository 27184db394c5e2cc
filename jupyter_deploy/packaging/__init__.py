"""Trained objects from a notebook, written as ordinary model folders.

:func:`package` turns a fitted scikit-learn estimator or pipeline, an XGBoost or LightGBM
model, a PyTorch ``nn.Module`` or a ``transformers`` pipeline into a model folder
(``config.yaml``, ``requirements.txt``, ``1/model.py``, the object under
``1/checkpoint/``) that ``load_local``, ``Client.deploy``, ``%%deploy`` and the CLI take
like any other. Each framework is imported only when an object of it is packaged.

Example::

    from jupyter_deploy import Client, package

    folder = package(clf, "iris", sample=X_test.head())
    Client().deploy(folder)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ModelDefinitionError
from ._common import MARK, pins, render

__all__ = ["package"]

#: The frameworks, in the order an object is matched against them (XGBoost's and LightGBM's
#: scikit-learn wrappers are estimators too, but are saved in their own formats).
_FRAMEWORKS = ("_transformers", "_torch", "_xgboost", "_lightgbm", "_sklearn")
SUPPORTED = ("scikit-learn estimators and pipelines, XGBoost models (Booster, XGBClassifier, ...), "
             "LightGBM models (Booster, LGBMClassifier, ...), PyTorch nn.Module, transformers pipelines")


def package(obj: Any, model_id: str, *, sample: Any = None, path: str | os.PathLike | None = None,
            requirements: str | list[str] | None = None, description: str | None = None) -> Path:
    """Write a model folder that serves ``obj`` and return its path.

    Args:
        obj: the trained object (see ``SUPPORTED``).
        model_id: the model's id, written to config.yaml.
        sample: a few rows of what the model is called with: a ``pandas.DataFrame`` (calls
            then take a DataFrame, its columns and dtypes checked on every call) or a numpy
            array (its dtype and the shape after the first axis checked). It is stored as the
            folder's input example (``1/example/``), and the generated ``test()``, which the
            first replica runs, checks the model reproduces the notebook's results on it.
            Without it, the columns or feature count the object was fitted with are checked.
        path: where to write the folder (default ``$JUPYTER_DEPLOY_HOME/packaged_models/MODEL_ID``).
            A folder there is replaced only if ``package()`` wrote it.
        requirements: more lines for requirements.txt, which already pins the versions of the
            framework (and numpy, pandas) installed here.
        description: the model's docstring (what ``help()`` on the deployed model shows).

    Raises ``ModelDefinitionError`` for an object it cannot serve (the message lists what it
    can), ``ConfigError`` for a bad model id, ``ValueError`` for a sample it cannot use.

    Example::

        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from jupyter_deploy import Client, Model, package

        X, y = load_iris(return_X_y=True, as_frame=True)
        clf = LogisticRegression(max_iter=500).fit(X, y)
        folder = package(clf, "iris", sample=X.head())     # config.yaml, 1/model.py, 1/checkpoint/...
        Client().deploy(folder)
        Model(model_id="iris").predict(X.head())           # array([0, 0, 0, 0, 0])
    """
    from ..config import default_config, dump_config
    from ..paths import home

    config = default_config(model_id)  # a bad id fails before anything is written
    framework = _framework(obj)
    dest = Path(path) if path is not None else home() / "packaged_models" / model_id
    _check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        checkpoint = tmp / "1" / "checkpoint"
        checkpoint.mkdir(parents=True)
        inputs = framework.inputs(obj, sample)
        plan = framework.plan(obj, inputs, checkpoint)
        examples = _write_example(tmp / "1" / "example", inputs, plan) if inputs.sample is not None else []
        (tmp / "1" / "model.py").write_text(render(plan, inputs, model_id, description, examples))
        reqs = pins([*plan.modules, "numpy", *(["pandas"] if inputs.kind == "dataframe" else [])])
        extra = requirements.splitlines() if isinstance(requirements, str) else list(requirements or [])
        (tmp / "requirements.txt").write_text("\n".join([*reqs, *(r.strip() for r in extra if r.strip())]) + "\n")
        notes = [f"# {MARK} from a {plan.framework} {plan.what}."]
        for note in plan.notes:
            notes += ["# " + line for line in textwrap.wrap(note, 96, subsequent_indent="  ")]
        (tmp / "config.yaml").write_text("\n".join(notes) + "\n" + dump_config(config))
        _swap(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _framework(obj: Any) -> ModuleType:
    import importlib

    for name in _FRAMEWORKS:
        module = importlib.import_module(f"{__name__}.{name}")
        if module.matches(obj):
            return module
    raise ModelDefinitionError(f"package() cannot serve a {type(obj).__module__}.{type(obj).__qualname__}; "
                               f"it serves {SUPPORTED}. For anything else, write a ModelClass (see "
                               "`jupyter-deploy init`)")


def _check_replaceable(dest: Path) -> None:
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return
    model = dest / "1" / "model.py"
    try:
        ours = MARK in model.read_text(errors="replace")[:4000]
    except OSError:
        ours = False
    if not ours:
        raise FileExistsError(f"{dest} exists and package() did not write it; give another path, or delete it")


def _write_example(folder: Path, inputs: Any, plan: Any) -> list[str]:
    """Store the sample and the notebook's results on it (for the generated test()); the methods
    with a stored result."""
    import numpy as np

    from .runtime import as_array, write_value

    folder.mkdir()
    write_value(folder / "input.pb", inputs.python_type, inputs.sample)
    for name, value in plan.outputs.items():
        returns = plan.methods[name].returns
        if returns == "Any":  # a transformers pipeline's JSON-like result
            write_value(folder / f"{name}.pb", Any, value)
        elif returns == "list[str]":
            write_value(folder / f"{name}.pb", list[str], [str(v) for v in np.asarray(value).tolist()])
        else:
            write_value(folder / f"{name}.pb", np.ndarray, as_array(value))
    return list(plan.outputs)


def _swap(new: Path, dest: Path) -> None:
    """Put the folder ``new`` at ``dest``: a reader sees the old folder or the new one, never half."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old."))
    os.replace(dest, old / "folder")
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old / "folder", dest)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
