"""``%%deploy``, ``%predict`` and ``%stream`` in a real IPython shell, against a real daemon."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from daemon_helpers import isolated_home
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from jupyter_deploy import (
    Deployment,
    DeploymentError,
    InputError,
    LocalModel,
    ModelDefinitionError,
    ModelError,
)
from jupyter_deploy.notebook import magics as magics_module
from jupyter_deploy.notebook.magics import DeployMagics

pytestmark = pytest.mark.timeout(120)

MODEL = '''
import time
from pathlib import Path
from typing import Iterator

from jupyter_deploy import ModelClass

VERSION = "{version}"


class Echo(ModelClass):
    @ModelClass.method
    def predict(self, text: str, upper: bool = False) -> str:
        out = f"{{VERSION}}:{{text}}"
        return out.upper() if upper else out

    @ModelClass.method
    def generate(self, text: str, delay: float = 0.0, marker: str = "") -> Iterator[str]:
        try:
            for word in text.split():
                time.sleep(delay)
                yield word + " "
        finally:
            if marker:
                Path(marker).write_text("closed")

    @ModelClass.method
    def stream(self, words: Iterator[str], suffix: str = "!") -> Iterator[str]:
        for w in words:
            yield w + suffix

    @ModelClass.method
    def count(self, n: int) -> Iterator[int]:
        yield from range(n)

    @ModelClass.method
    def size(self, data: bytes, extra: int = 0) -> int:
        return len(data) + extra

    @ModelClass.method
    def fail(self, key: str) -> str:
        table = {{}}
        return table[key]

    def test(self):
        assert self.predict("t") == f"{{VERSION}}:t"
'''


class TestingShell(InteractiveShell):
    """jupysql's pattern: a cell's exception is raised in the test, not only printed."""

    __test__ = False

    def run_cell(self, *args, **kwargs):
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with isolated_home(tmp_path_factory, "magics_home") as home:
        yield home


@pytest.fixture(scope="module")
def ip(home):
    c = Config()
    c.HistoryAccessor.enabled = False  # no sqlite history: "too many open files" in long runs
    shell = TestingShell(config=c)
    shell.displayhook.flush = lambda: None  # a gc hang at exit otherwise
    shell.run_cell("%load_ext jupyter_deploy")
    yield shell
    magics = shell.magics_manager.registry.get("DeployMagics")
    if magics is not None:
        magics.close()


@pytest.fixture(scope="module")
def deployed(ip):
    """`%%deploy echo` of version v1, once for the module."""
    ip.run_cell(f"%%deploy echo --min-replicas 1 -o dep\n{MODEL.format(version='v1')}")
    return ip.user_ns["dep"]


def magics(ip) -> DeployMagics:
    return ip.magics_manager.registry["DeployMagics"]


# ---------------------------------------------------------------- without a daemon


def test_loading_the_extension_contacts_no_daemon(ip, home):
    assert magics(ip)._client is None or (home / "daemon.json").exists()
    assert ip.find_cell_magic("deploy") is not None
    assert ip.find_line_magic("predict") is not None and ip.find_line_magic("stream") is not None


def test_usage_text_lists_the_options(ip, capsys):
    assert all(opt in DeployMagics.deploy.__doc__ for opt in (
        "--nodepool", "--cluster", "--deployment-id", "--app-id", "--config", "--requirements",
        "--min-replicas", "--max-replicas", "--local", "--no-test"))
    assert all(opt in DeployMagics.predict.__doc__ for opt in (
        "--method", "--url", "--file", "--bytes", "--deployment-id", "--cluster", "--nodepool", "-o"))
    assert "--input" in DeployMagics.stream.__doc__
    for magic, option in (("deploy", "--nodepool"), ("predict", "--method"), ("stream", "--input")):
        ip.run_cell(f"%{magic}?")  # pinfo pages the usage (printed in a plain shell)
        assert option in capsys.readouterr().out
    with pytest.raises(UsageError, match="cell magic"):
        ip.run_cell("%deploy echo")


@pytest.mark.parametrize("magic, line", [
    ("predict", ""),                                    # no model
    ("predict", "echo --bogus"),                        # unknown option
    ("predict", "echo --cluster local"),                # cluster without nodepool
    ("predict", "echo --deployment-id a --cluster b --nodepool c"),
    ("predict", "echo --url http://x --file y"),        # two media sources
    ("predict", "echo -o 1x"),                          # not a variable name
    ("predict", "echo text='unterminated"),
    ("predict", "echo $nowhere_defined"),               # unknown notebook variable
    ("stream", "echo --input"),                         # option without its value
    ("deploy", "echo --min-replicas many"),
    ("deploy", "echo --max-replicas 0"),
    ("deploy", "echo --frobnicate"),
    ("deploy", ""),                                     # no model id
])
def test_argument_mistakes_are_usage_errors(ip, magic, line):
    with pytest.raises(UsageError):
        if magic == "deploy":
            ip.run_cell_magic("deploy", line, MODEL.format(version="x"))
        else:
            ip.run_line_magic(magic, line)


def test_a_syntax_error_points_at_the_cell_line(ip, capsys):
    cell = "from jupyter_deploy import ModelClass\n\nclass Bad(ModelClass):\n    def predict(self x):\n"
    with pytest.raises(ModelDefinitionError, match=r"cell line 5 \(model.py line 4\)") as e:
        ip.run_cell(f"%%deploy bad\n{cell}")
    assert "def predict(self x)" in str(e.value)
    shown = capsys.readouterr().out
    assert "ModelDefinitionError: syntax error at cell line 5" in shown
    assert "magics.py" not in shown  # one short message, not our stack


def test_a_name_defined_only_in_the_notebook_is_named(ip):
    ip.run_cell("def helper(text):\n    return text[::-1]\nTHRESHOLD = 3")
    cell = textwrap.dedent('''
        from jupyter_deploy import ModelClass

        class Uses(ModelClass):
            @ModelClass.method
            def predict(self, text: str) -> str:
                ok = [w for w in text.split() if len(w) > THRESHOLD]
                return helper(" ".join(ok)) + str(len(ok))
    ''')
    with pytest.raises(ModelDefinitionError) as e:
        ip.run_cell(f"%%deploy uses\n{cell}")
    message = str(e.value)
    assert "THRESHOLD (cell line 8" in message and "helper (cell line 9" in message
    assert "defined only in the notebook" in message
    assert "len" not in message.split(":")[0] and "str (" not in message


def test_names_the_cell_defines_imports_or_declares_global_are_fine():
    magics_module.check_cell_source(textwrap.dedent('''
        import os as _os
        from typing import Iterator
        from jupyter_deploy import ModelClass
        try:
            import numpy as np
        except ImportError:
            np = None
        LIMIT = 3

        def helper(x):
            return [y for y in x if y]

        class M(ModelClass):
            def load_model(self):
                global CACHE
                CACHE = {}
            @ModelClass.method
            def predict(self, text: str) -> str:
                with open(_os.devnull) as f:
                    pass
                return str(CACHE) + str(helper(text)) + str(LIMIT) + __name__ + str(np)
    '''))
    with pytest.raises(ModelDefinitionError, match="undefined_thing"):
        magics_module.check_cell_source("from jupyter_deploy import ModelClass\n"
                                        "class M(ModelClass):\n    x = undefined_thing\n")


def test_values_are_literals_then_notebook_references_then_text():
    ns = magics_module._Namespace({"var": "from the notebook", "n": 2}, None)
    assert ns.value("3") == 3 and ns.value("[1, 2]") == [1, 2] and ns.value('"a b"') == "a b"
    assert ns.value("$var") == "from the notebook" and ns.value("{n * 21}") == 42
    assert ns.value("hello") == "hello" and ns.value("'{n}'") == "{n}"  # quoted: no expansion
    assert magics_module._split('echo text="a b" {f(1, 2)} [1, 2] x=\'c d\'') == [
        "echo", 'text="a b"', "{f(1, 2)}", "[1, 2]", "x='c d'"]


def test_every_magic_reads_its_line_with_the_same_grammar():
    ns = magics_module._Namespace({"n": 2, "path": "/tmp/c.yaml", "blob": b"xy"}, None)
    deploy = magics_module.parse_line(
        DeployMagics.deploy, 'echo --requirements "a b" --min-replicas $n --config=$path -o dep', ns)
    assert (deploy.model_id, deploy.requirements, deploy.min_replicas, deploy.config, deploy.output) == (
        "echo", "a b", 2, "/tmp/c.yaml", "dep")
    predict = magics_module.parse_line(
        DeployMagics.predict, "echo 'x y' --bytes blob n={n + 1} --deployment-id $path;", ns)
    assert predict.args == [(None, "x y"), ("n", 3)]
    assert (predict.bytes, predict.deployment_id, predict.method) == (b"xy", "/tmp/c.yaml", "predict")
    stream = magics_module.parse_line(DeployMagics.stream, "echo --input {[n]} --cluster c", ns)
    assert (stream.input, stream.cluster, stream.method) == ([2], "c", None)


# ---------------------------------------------------------------- against the daemon


def test_deploy_returns_the_running_deployment(ip, deployed, home):
    assert isinstance(deployed, Deployment) and deployed.id == "echo"
    assert deployed.state == "RUNNING"
    folder = home / "notebook_models" / "echo"
    assert (folder / "1" / "model.py").read_text().strip() == MODEL.format(version="v1").strip()
    assert "id: echo" in (folder / "config.yaml").read_text()
    assert ip.user_ns["_"] is deployed or ip.user_ns.get("dep") is deployed


def test_predict_returns_the_plain_value(ip, deployed):
    ip.run_cell("x = %predict echo hi")
    assert ip.user_ns["x"] == "v1:hi" and type(ip.user_ns["x"]) is str
    ip.run_cell("var = 'from a variable'\ny = %predict echo text=$var upper=True")
    assert ip.user_ns["y"] == "V1:FROM A VARIABLE"
    ip.run_cell("%predict echo 'two words' -o z")
    assert ip.user_ns["z"] == "v1:two words"
    ip.run_cell("w = %predict echo {var.split()[0]} --deployment-id echo")
    assert ip.user_ns["w"] == "v1:from"
    ip.run_cell("v = %predict echo hi --cluster local --nodepool local")
    assert ip.user_ns["v"] == "v1:hi"
    ip.run_cell("def f():\n    inner = 'local'\n    r = %predict echo $inner\n    return r\nfx = f()")
    assert ip.user_ns["fx"] == "v1:local"  # $name reads the function's own scope
    # A literal fills a str parameter as the text it was written as; other parameters get values.
    ip.run_cell("n = %predict echo 123 upper=True")
    assert ip.user_ns["n"] == "V1:123"
    ip.run_cell("n2 = %predict echo text=[1, 2]")
    assert ip.user_ns["n2"] == "v1:[1, 2]"
    ip.run_cell("s = %predict echo --method size {b'abc'} extra=2")
    assert ip.user_ns["s"] == 5


def test_predict_form_is_built_from_the_signature_and_runs(ip, deployed):
    ip.run_cell("form = %predict echo --form")
    form = ip.user_ns["form"]
    assert list(form.fields) == ["text", "upper"]
    form.fields["text"].value = "from the form"
    assert form.run() == "v1:from the form"


def test_type_mistakes_are_input_errors(ip, deployed, capsys):
    with pytest.raises(InputError, match="text"):
        ip.run_cell("%predict echo {1+1}")
    assert "InputError" in capsys.readouterr().out
    with pytest.raises(InputError):
        ip.run_cell("%predict echo hi nope=1")
    with pytest.raises(UsageError, match="no method 'nothing'"):
        ip.run_cell("%predict echo --method nothing")


def test_a_model_exception_shows_the_models_frames(ip, deployed, capsys):
    with pytest.raises(ModelError) as e:
        ip.run_cell("%predict echo --method fail missing")
    assert e.value.type == "KeyError"
    shown = capsys.readouterr().out
    assert "model.py" in shown and "return table[key]" in shown
    assert "_api.py" not in shown and "magics.py" not in shown


def test_media_by_bytes_and_by_file(ip, deployed, tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"12345")
    ip.user_ns["blob"] = b"abc"
    ip.run_cell("n = %predict echo --method size --bytes blob")
    assert ip.user_ns["n"] == 3
    ip.run_cell(f"m = %predict echo 10 --method size --file {path}")
    assert ip.user_ns["m"] == 15
    with pytest.raises(UsageError, match="no image, audio, video or bytes"):
        ip.run_cell("%predict echo --url http://example.invalid/x.png")


def test_stream_returns_the_joined_text(ip, deployed, capsys):
    ip.run_cell('t = %stream echo "a b c"')
    assert ip.user_ns["t"] == "a b c "
    ip.run_cell("items = %stream echo 4 --method count")
    assert ip.user_ns["items"] == [0, 1, 2, 3]
    ip.run_cell("g = %predict echo 'x y' --method generate")  # %predict of a stream consumes it
    assert ip.user_ns["g"] == "x y "
    with pytest.raises(UsageError, match="unary"):
        ip.run_cell("%stream echo hi --method predict")


def test_stream_without_the_widgets_writes_the_text_as_it_comes(ip, deployed, monkeypatch, capsys):
    monkeypatch.setattr(magics_module, "_optional", lambda module, name: None)
    ip.run_cell('plain = %stream echo "p q r"')
    assert ip.user_ns["plain"] == "p q r "
    assert "p q r \n" in capsys.readouterr().out


def test_stream_with_input_calls_a_bidi_method(ip, deployed):
    ip.run_cell("words = (w for w in ['x', 'y', 'z'])\ns = %stream echo --input words suffix='?'")
    assert ip.user_ns["s"] == "x?y?z?"
    ip.run_cell("s1 = %stream echo --input {('k',)} '~'")  # a positional value fills the other parameter
    assert ip.user_ns["s1"] == "k~"
    ip.run_cell("s2 = %stream echo --input {['p', 'q']} -o s3")
    assert ip.user_ns["s2"] == ip.user_ns["s3"] == "p!q!"
    with pytest.raises(UsageError, match="--input"):
        ip.run_cell("%stream echo --method stream")


def test_an_interrupt_cancels_the_stream_and_keeps_what_came(ip, deployed, monkeypatch):
    # A folder the runner may write, also as an OS user of its own (a root daemon sandboxes runners).
    shared = Path(tempfile.mkdtemp(prefix="jd-marker-"))
    shared.chmod(0o1777)
    marker = shared / "closed"

    class InterruptingView:
        def __init__(self):
            self.items = []
            self.closed = False

        def consume(self, items):
            for item in items:
                self.items.append(item)
                if len(self.items) == 2:
                    raise KeyboardInterrupt  # as the notebook's stop button does

        def close(self):
            self.closed = True

    real = magics_module._optional
    monkeypatch.setattr(magics_module, "_optional", lambda module, name: (
        InterruptingView if name == "StreamView" else real(module, name)))
    words = " ".join(f"w{i}" for i in range(200))
    ip.user_ns["long_text"] = words
    start = time.monotonic()
    ip.run_cell(f"part = %stream echo $long_text delay=0.02 marker='{marker}'")
    assert ip.user_ns["part"] == "w0 w1 "
    assert time.monotonic() - start < 3  # not the 4 s the whole stream takes
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "closed"  # the model's finally ran on the server
    shutil.rmtree(shared)


def test_a_changed_cell_rolls_out_a_new_version(ip, deployed):
    ip.run_cell(f"%%deploy echo -o dep2\n{MODEL.format(version='v2')}")
    assert ip.user_ns["dep2"].status["version_number"] == 2
    ip.run_cell("x2 = %predict echo hi")
    assert ip.user_ns["x2"] == "v2:hi"


def test_deploy_with_a_config_file_and_requirements(ip, deployed, home, tmp_path):
    config = tmp_path / "deployment.yaml"
    config.write_text("autoscale_config:\n  min_replicas: 1\n  max_replicas: 2\n"
                      "inference_compute_info:\n  cpu_limit: '1'\n")
    cell = MODEL.format(version="cfg").replace("class Echo", "class Other")
    ip.run_cell(f"%%deploy other-model --config {config} --requirements 'pyyaml numpy'\n{cell}")
    result = ip.user_ns["_"]
    assert isinstance(result, Deployment) and result.id == "other-model"  # the model's id, not renamed
    assert result.config["autoscale_config"]["max_replicas"] == 2
    folder = home / "notebook_models" / "other-model"
    assert (folder / "requirements.txt").read_text().split() == ["pyyaml", "numpy"]
    assert "cpu_limit" in (folder / "config.yaml").read_text()
    ip.run_cell("o = %predict other-model hi")
    assert ip.user_ns["o"] == "cfg:hi"
    # Models are named one way in every error: user/app/models/id.
    with pytest.raises(UsageError, match=r"^model local/default/models/other-model has no method 'nope'"):
        ip.run_cell("%predict other-model --method nope hi")
    from jupyter_deploy import ControlPlaneError

    with pytest.raises(ControlPlaneError, match=r"model local/default/models/other-model already has a "
                                                r"deployment \(other-model\) on nodepool local/local"):
        ip.run_cell(f"%%deploy other-model --deployment-id second\n{cell}")
    result.delete()


def test_a_deployment_takes_the_model_id_as_written(ip, deployed):
    cell = MODEL.format(version="mm").replace("class Echo", "class MyModel")
    ip.run_cell(f"%%deploy my_model-1 -o mm\n{cell}")
    assert ip.user_ns["mm"].id == "my_model-1"
    ip.run_cell("r = %predict my_model-1 hi")
    assert ip.user_ns["r"] == "mm:hi"
    ip.user_ns["mm"].delete()
    with pytest.raises(UsageError, match=r"bad deployment id 'x{65}': at most 64 characters.*--deployment-id"):
        ip.run_cell(f"%%deploy {'x' * 65}\n{cell}")


def test_local_loads_in_the_kernel_without_a_deployment(ip, deployed):
    cell = MODEL.format(version="local").replace("class Echo", "class LocalEcho")
    ip.user_ns["local_id"] = "localecho"
    ip.run_cell(f"%%deploy $local_id --local\n{cell}")
    model = ip.user_ns["LocalEcho"]
    assert isinstance(model, LocalModel)
    assert model.predict("hi") == "local:hi"
    ip.run_cell("lx = LocalEcho.predict('yo')")
    assert ip.user_ns["lx"] == "local:yo"
    client = magics(ip).client
    assert "localecho" not in [d.id for d in client.list_deployments()]
    assert "localecho" not in [m.id for m in client.list_models()]


def test_local_with_a_failing_test_shows_the_models_frames(ip, capsys):
    cell = MODEL.format(version="local").replace("class Echo", "class Broken").replace(
        'assert self.predict("t") == f"{VERSION}:t"', 'assert self.predict("t") == "nope", "wrong answer"')
    with pytest.raises(ModelError, match="wrong answer"):
        ip.run_cell(f"%%deploy broken --local\n{cell}")
    shown = capsys.readouterr().out
    assert "model.py" in shown and "in test" in shown and "local.py" not in shown
    ip.run_cell(f"%%deploy broken --local --no-test\n{cell}")
    assert isinstance(ip.user_ns["Broken"], LocalModel)


def test_no_test_deploys_a_model_whose_test_fails(ip, deployed):
    cell = MODEL.format(version="nt").replace("class Echo", "class NoTest").replace(
        'assert self.predict("t") == f"{VERSION}:t"', 'assert False, "this test() must not run"')
    ip.run_cell(f"%%deploy notest --no-test\n{cell}")
    ip.run_cell("nt = %predict notest hi")
    assert ip.user_ns["nt"] == "nt:hi"
    ip.run_cell("from jupyter_deploy import Deployment\nDeployment('notest').delete()")


def test_unload_removes_the_magics_and_reload_brings_them_back(ip, deployed):
    ip.run_cell("%unload_ext jupyter_deploy")
    assert ip.find_line_magic("predict") is None and ip.find_cell_magic("deploy") is None
    ip.run_cell("%load_ext jupyter_deploy")
    assert magics(ip)._client is None  # lazily made again
    ip.run_cell("x3 = %predict echo again")
    assert ip.user_ns["x3"] == "v2:again"


def test_a_failing_test_fails_the_deploy_with_the_tests_error(ip, deployed):
    # The first replica of the new version runs test(); it fails, so the rollout is rolled back
    # and the previous version keeps serving.
    echo_cell = MODEL.format(version="v3").replace(
        'assert self.predict("t") == f"{VERSION}:t"', 'assert self.predict("t") == "nope", "wrong answer"')
    ip.run_cell("before = %predict echo still")
    with pytest.raises(DeploymentError, match="rolled back") as e:
        ip.run_cell(f"%%deploy echo\n{echo_cell}")
    message = str(e.value)
    assert "test() failed: AssertionError: wrong answer" in message
    # The test's own frame, named by the cell's line (the cell's first line is %%deploy's).
    assert 'File "model.py", line 46 (cell line 47), in test' in message
    assert "crashed" not in message and "last log lines" not in message
    assert len(message.splitlines()) < 15  # the model's error, not pages of logs
    assert e.value.failed_step == "test" and e.value.model_error.type == "AssertionError"
    ip.run_cell("x4 = %predict echo still")
    assert ip.user_ns["x4"] == ip.user_ns["before"]
