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
