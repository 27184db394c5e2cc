"""Other platforms' packages deployed as they are: Clarifai model folders (without the clarifai
package), Hopsworks predictor scripts, Oracle ADS artifacts and MLflow models, each written here
from its platform's documented contract, recognized by Client.upload_model / Client.deploy /
`jupyter-deploy upload`, served on real runners of a real daemon, called through the client and
the magics, and compared with what the package computes in this process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import isolated_home
from PIL import Image

from jupyter_deploy import Client, Concept, Frame, Model, ModelDefinitionError, Region
from jupyter_deploy.formats import as_model_folder

pytestmark = pytest.mark.timeout(300)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "formats_home") as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    client = Client()
    yield client
    client.close()


# ---------------------------------------------------------------- Clarifai

CLARIFAI_CONFIG = """
model:
  id: clarifai-demo
  user_id: someone
  app_id: demo-app
  model_type_id: multimodal-to-text
build_info:
  python_version: "3.11"
inference_compute_info:
  cpu_limit: "1"
  cpu_memory: 1Gi
  num_accelerators: 0
"""

CLARIFAI_MODEL = '''
from typing import Dict, Iterator, List

from clarifai.runners.models.model_class import ModelClass
from clarifai.runners.utils.data_types import Concept, Frame, Image, NamedFields, Region, Stream, Text
from clarifai.runners.utils.data_utils import Param


class DemoModel(ModelClass):
    """A Clarifai model written to Clarifai's documented contract."""

    def load_model(self):
        self.prefix = "clarifai: "

    @ModelClass.method
    def predict(self, prompt: Text, shout: bool = Param(default=False, description="upper case")) -> Text:
        """Echo the prompt."""
        out = self.prefix + prompt.text
        return Text(out.upper() if shout else out)

    @ModelClass.method
    def generate(self, prompt: str, n: int = 3) -> Iterator[Text]:
        for i in range(n):
            yield Text(f"{i}:{prompt}")

    @ModelClass.method
    def classify(self, image: Image) -> List[Concept]:
        r, g, b = image.to_pil().convert("RGB").getpixel((0, 0))
        return [Concept("red", r / 255), Concept(name="green", value=g / 255, id="g")]

    @ModelClass.method
    def detect(self, image: Image, threshold: float = 0.5) -> List[Region]:
        return [Region(box=[0.0, 0.0, 1.0, 1.0], concepts=[Concept("whole", threshold)])]

    @ModelClass.method
    def stats(self, values: List[float], labels: Dict[str, int]) -> NamedFields(mean=float, label=Text):
        return NamedFields(mean=sum(values) / len(values), label=Text(max(labels, key=labels.get)))

    @ModelClass.method
    def thumbnail(self, image: Image) -> Image:
        return Image.from_pil(image.to_pil().resize((2, 3)))

    @ModelClass.method
    def frames(self, video_frames: Stream[Frame]) -> Stream[Text]:
        for frame in video_frames:
            yield Text(f"{frame.time:.1f}:{frame.image.to_pil().size}")
'''


def clarifai_folder(root: Path) -> Path:
    return write(root, {"config.yaml": CLARIFAI_CONFIG, "requirements.txt": "clarifai>=11.0\npillow\n",
                        "1/model.py": CLARIFAI_MODEL})


def test_a_clarifai_folder_is_served_without_the_clarifai_package(client, tmp_path):
    assert subprocess.run([sys.executable, "-c", "import clarifai"], capture_output=True).returncode != 0
    folder = clarifai_folder(tmp_path / "demo")
    upload = subprocess.run([sys.executable, "-m", "jupyter_deploy", "upload", str(folder)],
                            capture_output=True, text=True, timeout=120)
    assert upload.returncode == 0, upload.stderr
    assert upload.stdout.startswith("uploaded clarifai-demo version 1"), upload.stdout  # config.yaml's id
    dep = client.deploy(folder, autoscale_config={"min_replicas": 1})
    assert dep.rollout.version.deduplicated and dep.rollout.readiness.done
    model = Model(model_id="clarifai-demo", client=client)
    # The method names, parameter names, defaults and types carry over, in the class's order.
    assert {n: s.signature_text for n, s in model.specs.items()} == {
        "predict": "(prompt: str, shout: bool = False) -> str",
        "generate": "(prompt: str, n: int = 3) -> Iterator[str]",
        "classify": "(image: PIL.Image.Image) -> list[Concept]",
        "detect": "(image: PIL.Image.Image, threshold: float = 0.5) -> list[Region]",
        "stats": "(values: list[float], labels: dict[str, int]) -> Fields",
        "thumbnail": "(image: PIL.Image.Image) -> PIL.Image.Image",
        "frames": "(video_frames: Iterator[Frame]) -> Iterator[str]"}
    assert model.predict.__doc__ == "Echo the prompt."
    assert model.predict("hi") == "clarifai: hi" and model.predict("hi", shout=True) == "CLARIFAI: HI"
    assert list(model.generate("x", n=2)) == ["0:x", "1:x"]
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    assert model.classify(red) == [Concept("red", "red", 1.0), Concept("g", "green", 0.0)]
    assert model.detect(red, threshold=0.25) == [Region((0.0, 0.0, 1.0, 1.0), [Concept("whole", "whole", 0.25)])]
    stats = model.stats([1.0, 2.0], {"a": 1, "b": 3})
    assert (stats.mean, stats.label) == (1.5, "b")
    assert model.thumbnail(red).size == (2, 3)
    assert list(model.frames(iter([Frame(red, 0.5), Frame(red, 1.0)]))) == ["0.5:(4, 4)", "1.0:(4, 4)"]

    converted, _ = as_model_folder(folder, None)
    assert (converted / "1" / "clarifai_model.py").read_text() == (folder / "1" / "model.py").read_text()
    assert "clarifai>=" not in (converted / "requirements.txt").read_text()  # nothing to install for it
    from jupyter_deploy.config import load_config

    assert load_config(converted).notes == (f"{converted / 'config.yaml'}: build_info: ignored (jupyter_deploy "
                                            "builds no images; the runner uses the model's requirements.txt)",)


def test_a_clarifai_model_that_does_not_import_names_its_file_and_line(client, tmp_path):
    folder = clarifai_folder(tmp_path / "broken")
    (folder / "1" / "model.py").write_text(CLARIFAI_MODEL.replace("    def load_model(self):",
                                                                  "    undefined_name\n\n    def load_model(self):"))
    with pytest.raises(ModelDefinitionError, match=r"clarifai_model.py, line 12: NameError: name 'undefined_name'"):
        client.upload_model(folder)


# ---------------------------------------------------------------- what is not a package


def test_a_folder_of_no_known_format_gets_one_message_listing_what_was_looked_for(client, tmp_path):
    (tmp_path / "nothing" / "data.csv").parent.mkdir()
    (tmp_path / "nothing" / "data.csv").write_text("a,b\n")
    with pytest.raises(ModelDefinitionError) as e:
        client.upload_model(tmp_path / "nothing")
    message = str(e.value)
    for looked_for in ("1/model.py", "Clarifai", "MLmodel", "score.py with runtime.yaml", "class Predict",
                       "ZIP"):
        assert looked_for in message


# ---------------------------------------------------------------- a model trained here, for the others


@pytest.fixture(scope="module")
def trained():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=500).fit(X, y)


# ---------------------------------------------------------------- Hopsworks

HOPSWORKS_PREDICTOR = """
import os

import joblib


class Predict(object):
    def __init__(self):
        # Hopsworks gives the model's files here.
        self.model = joblib.load(os.path.join(os.environ["MODEL_FILES_PATH"], "model.pkl"))

    async def predict(self, inputs):
        return self.model.predict(inputs).tolist()
"""

HOPSWORKS_TRANSFORMER = """
class Transformer(object):
    def __init__(self):
        self.scale = 0.1  # the callers send millimetres; the model was fitted on centimetres

    def preprocess(self, inputs):
        inputs["instances"] = [[v * self.scale for v in row] for row in inputs["instances"]]
        return inputs

    def postprocess(self, outputs):
        names = ["setosa", "versicolor", "virginica"]
        outputs["predictions"] = [names[p] for p in outputs["predictions"]]
        return outputs
"""


def hopsworks_folder(root: Path, estimator) -> Path:
    import joblib

    write(root, {"predictor.py": HOPSWORKS_PREDICTOR, "transformer.py": HOPSWORKS_TRANSFORMER})
    joblib.dump(estimator, root / "model.pkl")
    return root


def test_a_hopsworks_predictor_with_a_transformer_is_served(client, trained, tmp_path):
    X, clf = trained
    folder = hopsworks_folder(tmp_path / "hops-iris", clf)
    dep = client.deploy(folder, autoscale_config={"min_replicas": 1})
    assert dep.rollout.version.model_id == "hops-iris"  # the folder's name
    model = Model(model_id="hops-iris", client=client)
    assert list(model.specs) == ["predict"] and model.specs["predict"].signature_text == "(payload: JSON) -> JSON"
    rows = X.sample(12, random_state=0)
    got = model.predict({"instances": (rows.to_numpy() * 10).tolist()})
    names = ["setosa", "versicolor", "virginica"]
    assert got == {"predictions": [names[p] for p in clf.predict(rows)]}


def test_a_hopsworks_script_that_fails_to_load_names_its_file_and_line(client, trained, tmp_path):
    _, clf = trained
    folder = hopsworks_folder(tmp_path / "hops-broken", clf)
    (folder / "model.pkl").unlink()
    from jupyter_deploy import DeploymentError

    with pytest.raises(DeploymentError) as info:
        client.deploy(folder, timeout=120)
    text = f"{info.value} {info.value.reason} {' '.join(info.value.log_tail)}"
    assert "predictor.py, line 9: Predict(): FileNotFoundError" in text, text
    client.deployment("hops-broken").delete()


# ---------------------------------------------------------------- Oracle ADS

ADS_SCORE = """
import json
import os

import joblib

model_name = "model.joblib"


def load_model(model_file_name=model_name):
    model_dir = os.path.dirname(os.path.realpath(__file__))
    if model_file_name in os.listdir(model_dir):
        return joblib.load(os.path.join(model_dir, model_file_name))
    raise Exception(f"{model_file_name} is not found in model directory {model_dir}")


def predict(data, model=load_model()):
    import pandas as pd

    frame = pd.DataFrame.from_dict(json.loads(data) if isinstance(data, str) else data)
    return {"prediction": model.predict(frame).tolist()}
"""

ADS_RUNTIME = """
MODEL_ARTIFACT_VERSION: '3.0'
MODEL_DEPLOYMENT:
  INFERENCE_CONDA_ENV:
    INFERENCE_ENV_SLUG: generalml_p311_cpu_v1
    INFERENCE_ENV_TYPE: data_science
    INFERENCE_ENV_PATH: oci://bucket@namespace/conda/generalml_p311_cpu_v1
    INFERENCE_PYTHON_VERSION: '3.11'
"""


def test_an_ads_artifact_zip_is_served(client, trained, tmp_path):
    import zipfile

    import joblib

    X, clf = trained
    artifact = write(tmp_path / "artifact", {"score.py": ADS_SCORE, "runtime.yaml": ADS_RUNTIME})
    joblib.dump(clf, artifact / "model.joblib")
    packed = tmp_path / "ads-iris.zip"
    with zipfile.ZipFile(packed, "w") as z:  # as ADS zips an artifact: its files at the root
        for f in sorted(artifact.iterdir()):
            z.write(f, f.name)
    dep = client.deploy(packed, autoscale_config={"min_replicas": 1})
    assert dep.rollout.version.model_id == "ads-iris"  # the ZIP's name
    rows = X.sample(10, random_state=2)
    got = Model(model_id="ads-iris", client=client).predict(rows.to_dict(orient="list"))
    assert got == {"prediction": clf.predict(rows).tolist()}


def test_an_ads_runtime_yaml_without_its_version_is_refused(client, tmp_path):
    artifact = write(tmp_path / "noversion", {"score.py": ADS_SCORE, "runtime.yaml": "MODEL_DEPLOYMENT: {}\n"})
    with pytest.raises(ModelDefinitionError, match="runtime.yaml: no MODEL_ARTIFACT_VERSION"):
        client.upload_model(artifact)
    broken = write(tmp_path / "syntax", {"score.py": "def predict(data:\n", "runtime.yaml": ADS_RUNTIME})
    with pytest.raises(ModelDefinitionError, match=r"score.py, line 1"):
        client.upload_model(broken)


# ---------------------------------------------------------------- MLflow


def test_an_mlflow_model_is_served_through_pyfunc_with_its_signature(client, trained, tmp_path):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from mlflow.models import infer_signature

    X, clf = trained
    path = tmp_path / "mlflow-iris"
    mlflow_sklearn.save_model(clf, str(path), signature=infer_signature(X, clf.predict(X)))
    dep = client.deploy(path, autoscale_config={"min_replicas": 1})
    assert dep.rollout.readiness.done
    model = Model(model_id="mlflow-iris", client=client)
    assert model.specs["predict"].signature_text == "(data: pandas.DataFrame) -> numpy.ndarray"
    rows = X.sample(15, random_state=3)
    np.testing.assert_array_equal(model.predict(rows), clf.predict(rows))
    from jupyter_deploy import InputError

    with pytest.raises(InputError, match="data: missing column 'petal width"):
        model.predict(rows.drop(columns=["petal width (cm)"]))
    converted, _ = as_model_folder(path, "mlflow-iris")
    assert "mlflow-skinny==" in (converted / "requirements.txt").read_text()


# ---------------------------------------------------------------- through the magics


def test_the_foreign_models_answer_through_the_magics(client, trained):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    X, clf = trained
    c = Config()
    c.HistoryAccessor.enabled = False
    ip = InteractiveShell(config=c)
    ip.displayhook.flush = lambda: None
    ip.run_cell("%load_ext jupyter_deploy")
    magics = ip.magics_manager.registry["DeployMagics"]
    magics._client = client
    try:
        rows = X.head(4)
        ip.user_ns.update(rows=rows, payload={"instances": (rows.to_numpy() * 10).tolist()})
        for line, name in (("%predict hops-iris $payload", "hops"), ("%predict ads-iris {rows.to_dict('list')}", "ads"),
                           ("%predict mlflow-iris $rows", "mlf"), ("%predict clarifai-demo hello", "cf")):
            result = ip.run_cell(f"{name} = {line}")
            result.raise_error()
        expected = clf.predict(rows).tolist()
        assert ip.user_ns["hops"]["predictions"] == [["setosa", "versicolor", "virginica"][p] for p in expected]
        assert ip.user_ns["ads"] == {"prediction": expected}
        assert ip.user_ns["mlf"].tolist() == expected
        assert ip.user_ns["cf"] == "clarifai: hello"
    finally:
        magics._client = None


def test_a_hopsworks_script_alone_is_a_package_and_a_model_py_named_predict_is_not(home, tmp_path):
    from jupyter_deploy import load_local

    script = write(tmp_path, {"doubler.py": """
        class Predict:
            def __init__(self):
                self.k = 2

            def predict(self, inputs):
                return [x * self.k for x in inputs]
        """}) / "doubler.py"
    folder, model_id = as_model_folder(script, None)
    assert model_id == "doubler" and (folder / "1" / "artifacts" / "doubler.py").is_file()
    assert load_local(folder).predict([1, 2]) == {"predictions": [2, 4]}
    ours = write(tmp_path / "ours", {"model.py": """
        from jupyter_deploy import ModelClass

        class Predict(ModelClass):
            @ModelClass.method
            def predict(self, x: int) -> int:
                return x
        """}) / "model.py"
    assert as_model_folder(ours, None) == (ours, None)
