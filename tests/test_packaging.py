"""``jupyter_deploy.package`` and ``%deploy MODEL --object NAME``: trained objects of real frameworks
(scikit-learn, XGBoost, LightGBM; PyTorch where it is installed) packaged, deployed on real
runners of a real daemon, called through the client and the magics, their predictions
compared with the notebook's."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from daemon_helpers import isolated_home

from jupyter_deploy import Client, InputError, Model, ModelDefinitionError, load_local, package

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def pipeline(iris):
    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "packaging_home") as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    client = Client()
    yield client
    client.close()


# ---------------------------------------------------------------- the folder, in this process


def test_a_pipeline_with_a_dataframe_sample_becomes_a_readable_model_folder(home, pipeline, iris, tmp_path):
    X, _ = iris
    folder = package(pipeline, "iris-clf", sample=X.head(8), path=tmp_path / "iris",
                     description="Iris species from flower measurements.")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["1/checkpoint/model.skops", "1/example/decision_function.pb", "1/example/input.pb",
                     "1/example/predict.pb", "1/example/predict_proba.pb", "1/model.py", "config.yaml",
                     "requirements.txt"]
    source = (folder / "1" / "model.py").read_text()
    assert "class IrisClf(ModelClass):" in source and "def predict(self, X: pd.DataFrame) -> np.ndarray:" in source
    assert "'sepal length (cm)': 'float64'," in source  # the columns, readable
    assert len(source.splitlines()) < 70
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"scikit-learn=={sklearn.__version__}" in requirements
    assert any(r.startswith("skops==") for r in requirements) and not any("joblib" in r for r in requirements)
    assert "saved with skops" in (folder / "config.yaml").read_text()

    m = load_local(folder, run_test=True)  # its test() reproduces the notebook's results
    np.testing.assert_array_equal(m.predict(X.tail(5)), pipeline.predict(X.tail(5)))
    np.testing.assert_allclose(m.predict_proba(X.tail(5)), pipeline.predict_proba(X.tail(5)), rtol=1e-6)
    assert help_text(m.predict).startswith("predict(X: pandas.DataFrame) -> numpy.ndarray")
    assert m._host.cls.__doc__ == "Iris species from flower measurements."

    with pytest.raises(InputError, match=r"missing column 'petal width \(cm\)'"):
        m.predict(X.drop(columns=["petal width (cm)"]))
    with pytest.raises(InputError, match=r"column 'sepal width \(cm\)' has dtype str, expected float64"):
        m.predict(X.astype({"sepal width (cm)": "str"}))
    # ints where floats were fitted are cast; extra columns are dropped, the order is the model's.
    ints = X.round().astype("int64")[list(reversed(X.columns))].assign(extra=1)
    np.testing.assert_array_equal(m.predict(ints), pipeline.predict(X.round()))


def help_text(method) -> str:
    import inspect

    return f"{method.__name__}{inspect.signature(method)}".replace("'", "")


def test_an_ndarray_sample_checks_the_dtype_and_the_shape_after_the_first_axis(tmp_path):
    X, y = load_diabetes(return_X_y=True)
    reg = LinearRegression().fit(X, y)
    m = load_local(package(reg, "diabetes", sample=X[:4], path=tmp_path / "d"), run_test=True)
    np.testing.assert_allclose(m.predict(X[10:20]), reg.predict(X[10:20]))
    with pytest.raises(InputError, match=r"expected shape \(n, 10\), got \(3, 9\)"):
        m.predict(X[:3, :9])
    with pytest.raises(InputError, match="expected dtype float64, got complex128"):
        m.predict(X[:3].astype(complex))


def test_without_a_sample_the_fitted_columns_are_checked(pipeline, iris, tmp_path):
    X, _ = iris
    folder = package(pipeline, "iris-nosample", path=tmp_path / "n")
    assert not (folder / "1" / "example").exists() and "def test" not in (folder / "1" / "model.py").read_text()
    m = load_local(folder)
    np.testing.assert_array_equal(m.predict(X.head()), pipeline.predict(X.head()))
    with pytest.raises(InputError, match="missing column 'sepal length"):
        m.predict(X.drop(columns=["sepal length (cm)"]))


def test_text_labels_are_served_as_a_list_of_str(iris, tmp_path):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = LogisticRegression(max_iter=500).fit(X, names)
    m = load_local(package(clf, "iris-names", sample=X.head(3), path=tmp_path / "t"), run_test=True)
    assert m.predict(X.iloc[[0, 100]]) == ["setosa", "virginica"]


def test_what_skops_cannot_save_goes_to_joblib_with_a_note(iris, tmp_path):
    X, y = iris
    clf = LogisticRegression(max_iter=500).fit(X, y)
    clf.token_pattern_ = re.compile(r"\w+")  # skops refuses compiled patterns; pickle does not
    folder = package(clf, "iris-joblib", sample=X.head(3), path=tmp_path / "j")
    assert (folder / "1" / "checkpoint" / "model.joblib").is_file()
    config = " ".join(line.strip("# ") for line in (folder / "config.yaml").read_text().splitlines())
    assert "a pickle (joblib), because skops saved it but cannot load it back" in config
    assert "loading it runs the code it names" in config
    assert any(r.startswith("joblib==") for r in (folder / "requirements.txt").read_text().split())
    np.testing.assert_array_equal(load_local(folder, run_test=True).predict(X.tail(3)), clf.predict(X.tail(3)))


def test_a_class_defined_in_the_notebook_is_refused_with_what_to_do(tmp_path):
    code = textwrap.dedent('''
        import numpy as np
        from sklearn.base import BaseEstimator
        from jupyter_deploy import package

        class Doubler(BaseEstimator):
            def fit(self, X, y=None):
                self.n_features_in_ = X.shape[1]
                return self

            def predict(self, X):
                return 2 * X[:, 0]

        try:
            package(Doubler().fit(np.ones((2, 2))), "doubler", path={path!r})
        except Exception as e:
            print(type(e).__name__, e)
    ''').format(path=str(tmp_path / "doubler"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("ModelDefinitionError Doubler uses Doubler, defined in the notebook: a "
                                 "replica cannot import it"), out.stdout + out.stderr
    assert not (tmp_path / "doubler").exists()


def test_an_unsupported_object_gets_the_list_of_what_is_supported(tmp_path):
    with pytest.raises(ModelDefinitionError, match="cannot serve a builtins.dict; it serves scikit-learn "
                                                   "estimators and pipelines, XGBoost models"):
        package({"weights": [1, 2]}, "d", path=tmp_path / "d")
    with pytest.raises(ValueError, match="sample: expected a pandas DataFrame or a numpy array, got str"):
        package(LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0]), "r", sample="1.0", path=tmp_path / "r")
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def test_packaging_again_replaces_its_own_folder_only(pipeline, iris, tmp_path):
    X, _ = iris
    folder = package(pipeline, "again", sample=X.head(2), path=tmp_path / "again")
    package(pipeline, "again", path=folder)  # its own folder: replaced whole, no example left
    assert not (folder / "1" / "example").exists()
    (tmp_path / "mine" / "1").mkdir(parents=True)
    (tmp_path / "mine" / "1" / "model.py").write_text("# my own model\n")
    with pytest.raises(FileExistsError, match="package\\(\\) did not write it"):
        package(pipeline, "again", path=tmp_path / "mine")
    assert (tmp_path / "mine" / "1" / "model.py").read_text() == "# my own model\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]  # no temporary folder left


def test_the_generated_test_fails_when_the_model_no_longer_reproduces_the_notebook(pipeline, iris, tmp_path):
    X, _ = iris
    folder = package(pipeline, "drift", sample=X.head(3), path=tmp_path / "drift")
    from jupyter_deploy.packaging.runtime import write_value

    write_value(folder / "1" / "example" / "predict_proba.pb", np.ndarray, np.full((3, 3), 1 / 3))
    with pytest.raises(AssertionError, match="predict_proba: 9 of 9 values differ from the notebook's"):
        load_local(folder, run_test=True)


# ---------------------------------------------------------------- deployed, called through the client


def test_packaged_models_deploy_and_answer_as_in_the_notebook(client, pipeline, iris):
    X, y = iris
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    boosted = xgboost.XGBClassifier(n_estimators=8, max_depth=2).fit(X, y)
    light = lightgbm.LGBMRegressor(n_estimators=8, verbose=-1).fit(X.to_numpy(), y.astype(float))
    folders = {"irissk": package(pipeline, "irissk", sample=X.head(5)),
               "irisxgb": package(boosted, "irisxgb", sample=X.head(5)),
               "irislgb": package(light, "irislgb", sample=X.to_numpy()[:5])}
    for model_id, folder in folders.items():
        dep = client.deploy(folder, autoscale_config={"min_replicas": 1})  # its test() runs on the replica
        assert dep.rollout.readiness.done, model_id
    rows = X.sample(20, random_state=0)
    sk, xg, lg = (Model(model_id=m, client=client) for m in folders)
    np.testing.assert_array_equal(sk.predict(rows), pipeline.predict(rows))
    np.testing.assert_allclose(sk.predict_proba(rows), pipeline.predict_proba(rows), rtol=1e-6)
    np.testing.assert_array_equal(xg.predict(rows), boosted.predict(rows))
    np.testing.assert_allclose(xg.predict_proba(rows), boosted.predict_proba(rows), rtol=1e-6)
    np.testing.assert_allclose(lg.predict(rows.to_numpy()), light.predict(rows.to_numpy()), rtol=1e-6)
    with pytest.raises(InputError, match="missing column 'petal length"):
        sk.predict(rows.drop(columns=["petal length (cm)"]))  # the caller's mistake, as InputError
    with pytest.raises(InputError, match=r"expected shape \(n, 4\), got \(20, 3\)"):
        lg.predict(rows.to_numpy()[:, :3])


def test_lightgbm_classifier_labels_and_probabilities(iris, tmp_path):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(X, names)
    m = load_local(package(clf, "lgbm-names", sample=X.head(4), path=tmp_path / "l"), run_test=True)
    rows = X.sample(10, random_state=1)
    assert m.predict(rows) == clf.predict(rows).tolist()
    np.testing.assert_allclose(m.predict_proba(rows), clf.predict_proba(rows), rtol=1e-6)
    binary = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1).fit(X, y == 2)
    b = load_local(package(binary, "lgbm-binary", sample=X.head(4), path=tmp_path / "b"), run_test=True)
    np.testing.assert_allclose(b.predict_proba(rows), binary.predict_proba(rows), rtol=1e-6)
    np.testing.assert_array_equal(b.predict(rows), binary.predict(rows))


def test_an_xgboost_booster_is_served_through_a_dmatrix(iris, tmp_path):
    xgboost = pytest.importorskip("xgboost")
    X, y = iris
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
                            xgboost.DMatrix(X, label=y), num_boost_round=5)
    m = load_local(package(booster, "xgb-booster", sample=X.head(3), path=tmp_path / "x"), run_test=True)
    np.testing.assert_allclose(m.predict(X.tail(4)), booster.predict(xgboost.DMatrix(X.tail(4))), rtol=1e-6)


# ---------------------------------------------------------------- through the magics



@pytest.fixture(scope="module")
def ip(client):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Shell(InteractiveShell):
        def run_cell(self, *args, **kwargs):
            result = super().run_cell(*args, **kwargs)
            result.raise_error()
            return result

    c = Config()
    c.HistoryAccessor.enabled = False
    shell = Shell(config=c)
    shell.displayhook.flush = lambda: None
    shell.run_cell("%load_ext jupyter_deploy")
    shell.magics_manager.registry["DeployMagics"]._client = client
    yield shell
    shell.magics_manager.registry["DeployMagics"]._client = None


def test_the_line_magic_packages_a_notebook_variable_and_deploys_it(ip, pipeline, iris):
    X, _ = iris
    ip.user_ns.update(clf=pipeline, X=X)
    ip.run_cell("%deploy iris-magic --object clf --sample X.head(6) --min-replicas 1 -o dep")
    dep = ip.user_ns["dep"]
    assert dep.rollout.readiness.done and dep.id == "iris-magic"
    ip.run_cell("got = %predict iris-magic {X.iloc[40:60]}")
    np.testing.assert_array_equal(ip.user_ns["got"], pipeline.predict(X.iloc[40:60]))
    ip.run_cell("p = %predict iris-magic --method predict_proba {X.iloc[:3]}")
    np.testing.assert_allclose(ip.user_ns["p"], pipeline.predict_proba(X.iloc[:3]), rtol=1e-6)


def test_the_line_magic_says_what_it_needs(ip, pipeline):
    from IPython.core.error import UsageError

    ip.user_ns.update(clf=pipeline)
    with pytest.raises(UsageError, match="%deploy \\(one %\\) deploys a trained object"):
        ip.run_cell("%deploy iris-magic")
    with pytest.raises(UsageError, match="--object and --sample are for the line form"):
        ip.run_cell("%%deploy iris-magic --object clf\nx = 1\n")
    with pytest.raises(UsageError, match="--sample nothing_here: name 'nothing_here' is not defined"):
        ip.run_cell("%deploy iris-magic --object clf --sample nothing_here")
    ip.run_cell("%deploy iris-local --object clf --local -o local_model")
    assert ip.user_ns["local_model"].predict(pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2]], columns=list(pipeline.feature_names_in_))).tolist() == [0]


# ---------------------------------------------------------------- PyTorch (skipped where it is not installed)


def test_a_torch_module_is_served_as_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    sample = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    folder = package(module, "torch-seq", sample=sample, path=tmp_path / "t")
    assert (folder / "1" / "checkpoint" / "model.pt").is_file()
    m = load_local(folder, run_test=True)
    x = np.random.default_rng(1).random((7, 4), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(m.predict(x), module(torch.as_tensor(x)).numpy(), rtol=1e-5)
    with pytest.raises(InputError, match=r"expected shape \(n, 4\)"):
        m.predict(x[:, :2])
