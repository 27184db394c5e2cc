"""The package's public surface: what `dir()` shows, what `__all__` promises, and that
importing it stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import jupyter_deploy


def test_dir_shows_the_public_names_and_only_them():
    names = dir(jupyter_deploy)
    assert set(jupyter_deploy.__all__) <= set(names)
    for lazy in ("Client", "Model", "load_local", "Rollout", "Event", "predict_form", "package"):
        assert lazy in names  # loaded on first use, listed all the same
    for internal in ("errors", "model", "proto", "annotations", "Any", "_LAZY"):
        assert internal not in names


def test_every_public_name_resolves_and_has_an_example():
    missing = []
    for name in jupyter_deploy.__all__:
        value = getattr(jupyter_deploy, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and "Example" not in (inspect.getdoc(value) or ""):
            missing.append(name)
    assert missing == []


def test_the_package_docstring_shows_the_deploy_path():
    assert "Client().deploy" in jupyter_deploy.__doc__ and "%%deploy" in jupyter_deploy.__doc__


def test_import_loads_no_machine_learning_framework():
    # `package` is listed, and resolving it still imports no framework: each is imported only
    # when an object of it is packaged.
    out = subprocess.run([sys.executable, "-c", "import sys, jupyter_deploy; jupyter_deploy.package; "
                          "print(sorted(m for m in ('sklearn', 'skops', 'joblib', 'xgboost', 'lightgbm', "
                          "'torch', 'transformers', 'mlflow') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_loads_neither_grpc_nor_pandas_nor_pydantic():
    # (tests/test_imports.py checks more: protobuf, yaml, ipywidgets, and %load_ext.)
    out = subprocess.run([sys.executable, "-c", "import sys, jupyter_deploy; print(sorted(m for m in "
                          "('grpc', 'pandas', 'pydantic', 'IPython', 'google.protobuf') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
