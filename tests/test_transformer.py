"""Transformers (``1/transformer.py``) with real runner processes over real gRPC."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import RunnerProcess, runner_command, write_model
from daemon_helpers import isolated_home

from jupyter_deploy import (
    Client,
    ModelDefinitionError,
    ModelError,
    Nodepool,
    Transformer,
    TransformerError,
    load_local,
)
from jupyter_deploy.control._configs import deployment_config, runner_args
from jupyter_deploy.control._errors import InvalidArgument

pytestmark = pytest.mark.timeout(180)

MODEL = '''
from typing import Iterator

from jupyter_deploy import ModelClass


class Words(ModelClass):
    @ModelClass.method
    def predict(self, text: str, n: int = 1) -> str:
        if text == "model-boom":
            raise KeyError("the model broke")
        return f"<{text}*{n}>"

    @ModelClass.method
    def generate(self, text: str) -> Iterator[str]:
        for word in text.split():
            yield word

    @ModelClass.method
    def stream(self, words: Iterator[str], sep: str = "") -> Iterator[str]:
        for w in words:
            yield w + sep

    @ModelClass.method(batch=True)
    def lengths(self, text: list[str]) -> list[int]:
        return [len(t) for t in text]
'''

TRANSFORMER = '''
from jupyter_deploy import Transformer


class Tidy(Transformer):
    """Lower-cases text inputs; brackets string outputs; fails on request."""

    def load(self):
        self.calls = 0

    def preprocess(self, method, inputs):
        if inputs.get("text") == "pre-boom" or inputs.get("words") == "pre-boom":
            raise ValueError("cannot tidy this input")
        for key in ("text", "words"):
            if isinstance(inputs.get(key), str):
                inputs[key] = inputs[key].strip().lower()
        return inputs

    def postprocess(self, method, output):
        if output == "post-boom":
            raise RuntimeError("cannot tidy this output")
        if isinstance(output, int):
            return output * 100
        return f"[{output}]"
'''


def model_folder(root: Path, transformer: str | None = TRANSFORMER, model_id: str = "words") -> Path:
    folder = write_model(root, MODEL, model_id)
    if transformer is not None:
        (folder / "1" / "transformer.py").write_text(textwrap.dedent(transformer))
    return folder


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = RunnerProcess(model_folder(tmp_path_factory.mktemp("words")))
    try:
        r.client().wait_ready(60)
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def client(runner):
    return runner.client(timeout=30)


def test_the_runner_says_it_runs_the_transformer(runner) -> None:
    assert any("transformer: Tidy (1/transformer.py)" in line for line in runner.stdout)


def test_unary_inputs_and_outputs_go_through_the_transformer(client) -> None:
    assert client.predict("  HeLLo ", n=2) == "[<hello*2>]"


def test_server_streams_are_transformed_per_item(client) -> None:
    assert list(client.generate("A B C")) == ["[a]", "[b]", "[c]"]


def test_bidi_streams_are_transformed_per_item_both_ways(client) -> None:
    assert list(client.stream(iter(["X ", "Y"]), sep="!")) == ["[x!]", "[y!]"]


def test_batched_calls_are_transformed_per_caller(client) -> None:
    assert client.lengths("  ABC  ") == 300  # preprocess strips to "abc", postprocess x100


def test_a_preprocess_error_is_the_transformers_not_the_models(client) -> None:
    with pytest.raises(TransformerError) as e:
        client.predict("pre-boom")
    assert not isinstance(e.value, ModelError)
    assert "transformer Tidy.preprocess() on predict() raised ValueError: cannot tidy this input" in str(e.value)
    assert "transformer.py" in e.value.remote_traceback


def test_a_postprocess_error_in_a_stream_is_the_transformers(client) -> None:
    with pytest.raises(TransformerError, match=r"Tidy.postprocess\(\) on generate\(\) raised RuntimeError"):
        list(client.generate("ok post-boom"))


def test_a_preprocess_error_on_a_bidi_item_is_the_transformers(client) -> None:
    with pytest.raises(TransformerError, match=r"Tidy.preprocess\(\) on stream\(\) raised ValueError"):
        list(client.stream(iter(["fine", "pre-boom"])))


def test_model_errors_stay_model_errors(client) -> None:
    with pytest.raises(ModelError) as e:
        client.predict("model-boom")
    assert e.value.type == "KeyError"


def test_a_runner_with_the_transformer_turned_off_calls_the_model_directly(tmp_path) -> None:
    r = RunnerProcess(model_folder(tmp_path / "m"), "--no-transformer")
    try:
        c = r.client(timeout=30)
        c.wait_ready(60)
        assert c.predict("  HeLLo ") == "<  HeLLo *1>"
        assert any("transformer Tidy is turned off" in line for line in r.stdout)
    finally:
        r.stop()


def test_a_transformer_that_fails_to_load_stops_the_runner_naming_it(tmp_path) -> None:
    folder = model_folder(tmp_path / "m", '''
        from jupyter_deploy import Transformer

        class Broken(Transformer):
            def load(self):
                raise OSError("vocabulary.txt is missing")
        ''')
    out = subprocess.run(runner_command(folder), capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert "transformer Broken (1/transformer.py) failed to load: OSError: vocabulary.txt is missing" in out.stderr


def test_a_plain_class_with_both_hooks_is_a_transformer(tmp_path) -> None:
    model = load_local(model_folder(tmp_path / "m", '''
        class Upper:
            def preprocess(self, method, inputs):
                return {**inputs, "text": inputs["text"].upper()}

            def postprocess(self, method, output):
                return output
        '''))
    assert model.predict("abc") == "<ABC*1>"


@pytest.mark.parametrize("source, message", [
    ("class A:\n    def preprocess(self, m, i): return i\n", "exactly one transformer class"),
    ("def nothing(:\n", "syntax error"),
    ("import not_a_module_anywhere\n", "no module named 'not_a_module_anywhere'"),
])
def test_a_bad_transformer_file_is_refused_when_the_folder_is_read(tmp_path, source, message) -> None:
    with pytest.raises(ModelDefinitionError, match=message) as e:
        load_local(model_folder(tmp_path / "m", source))
    assert "transformer.py" in str(e.value)


def test_load_local_runs_the_transformer_unless_told_not_to(tmp_path) -> None:
    folder = model_folder(tmp_path / "m")
    assert load_local(folder).predict(" HI ") == "[<hi*1>]"
    assert load_local(folder, transformer=False).predict(" HI ") == "< HI *1>"


def test_the_base_class_passes_values_through() -> None:
    t = Transformer()
    assert t.preprocess("predict", {"x": 1}) == {"x": 1}
    assert t.postprocess("predict", 5) == 5


@pytest.mark.parametrize("value, enabled", [(None, None), (True, True), (False, False),
                                            ({"enabled": False}, False), ({}, True)])
def test_the_transformer_setting_and_its_runner_flag(value, enabled) -> None:
    data = {"worker": {"model": {"id": "m"}}}
    if value is not None:
        data["transformer"] = value
    cfg = deployment_config(data, caller="local")
    if enabled is None:
        assert "transformer" not in cfg and runner_args(cfg) == []
    else:
        assert cfg["transformer"] == {"enabled": enabled}
        assert ("--no-transformer" in runner_args(cfg)) is (not enabled)


@pytest.mark.parametrize("value, problem", [
    ({"enabled": "no"}, "deployment config: transformer.enabled: expected true or false"),
    ({"on": True}, "deployment config: transformer.on: unknown field"),
    ("yes", "deployment config: transformer: expected a mapping"),
])
def test_bad_transformer_settings_are_one_clear_line(value, problem) -> None:
    with pytest.raises(InvalidArgument) as e:
        deployment_config({"worker": {"model": {"id": "m"}}, "transformer": value}, caller="local")
    assert str(e.value).startswith(problem) and "\n" not in str(e.value)


def test_a_deployment_uploads_and_runs_the_transformer_and_can_turn_it_off(tmp_path_factory, tmp_path) -> None:
    with isolated_home(tmp_path_factory, "transformer_home"):
        client = Client()
        version = client.upload_model(model_folder(tmp_path / "words"))
        assert version.number == 1
        nodepool = Nodepool("local", compute_cluster_id="local", client=client)
        deployment = nodepool.create_deployment("words", worker={"model": {"id": "words"}})
        deployment.wait_until_ready(120)
        model = client.model("words")
        assert model.predict(" ABC ") == "[<abc*1>]"
        with pytest.raises(TransformerError, match="Tidy.preprocess"):
            model.predict("pre-boom")
        deployment.stop()
        deployment.update(transformer={"enabled": False})
        deployment.start().wait_until_ready(120)
        assert model.predict(" ABC ") == "< ABC *1>"
