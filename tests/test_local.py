"""``jupyter_deploy.load_local``: a model tested in this process, through the real codec."""

from __future__ import annotations

import inspect
import textwrap

import numpy as np
import pytest
from conftest import wait_for, write_model

from jupyter_deploy import InputError, LocalModel, ModelDefinitionError, ModelError, load_local

pytestmark = pytest.mark.timeout(60)

SOURCE = textwrap.dedent('''
    import asyncio
    from collections.abc import Iterator
    from pathlib import Path

    import numpy as np
    from jupyter_deploy import ModelClass


    class Local(ModelClass):
        """A model tested in the kernel."""

        def load_model(self):
            self.loaded = True
            self.tested = False

        @ModelClass.method
        def predict(self, text: str, times: int = 2, *, sep: str = "-") -> str:
            """Repeat text."""
            return sep.join([text] * times)

        @ModelClass.method
        async def apredict(self, x: float) -> float:
            await asyncio.sleep(0)
            return x * 2

        @ModelClass.method
        def generate(self, n: int, marker: str = "") -> Iterator[int]:
            try:
                for i in range(n):
                    yield i
            finally:
                if marker:
                    Path(marker).write_text("closed")

        @ModelClass.method
        def stream(self, items: Iterator[str], suffix: str = "!") -> Iterator[str]:
            for item in items:
                yield item + suffix

        @ModelClass.method
        def scale(self, a: np.ndarray, k: float = 2.0) -> np.ndarray:
            return a * k

        @ModelClass.method
        def divide(self, a: int, b: int) -> float:
            return a / b

        @ModelClass.method
        def fail_after(self, n: int) -> Iterator[int]:
            yield from range(n)
            raise KeyError("gone")

        @ModelClass.method
        def wrong_return(self) -> int:
            return "text"

        def test(self):
            assert self.predict("a") == "a-a"
            self.tested = True
''')


@pytest.fixture(scope="module")
def model() -> LocalModel:
    return load_local(SOURCE)


def test_load_local_from_source(model):
    assert model.model.loaded is True
    assert model.predict("x") == "x-x"
    assert model.predict("x", 3, sep="+") == "x+x+x"
    assert model.apredict(1.5) == 3.0
    assert list(model.generate(3)) == [0, 1, 2]
    assert list(model.stream(iter(["a", "b"]), suffix="?")) == ["a?", "b?"]
    np.testing.assert_array_equal(model.scale(np.arange(3, dtype=np.int64), k=0.5), [0.0, 0.5, 1.0])


def test_load_local_from_folder_and_model_py(tmp_path):
    folder = write_model(tmp_path / "m", SOURCE, model_id="local")
    for ref in (folder, str(folder), folder / "1" / "model.py", str(folder / "1" / "model.py")):
        m = load_local(ref)
        assert m.predict("y", 1) == "y"
        assert m.model.model_path == folder
        assert m.model.config.model.id == "local"


def test_run_test(tmp_path):
    m = load_local(SOURCE, run_test=True)
    assert m.model.tested is True
    assert load_local(SOURCE).test() is True
    failing = SOURCE.replace('assert self.predict("a") == "a-a"', 'assert self.predict("a") == "nope"')
    with pytest.raises(AssertionError):
        load_local(failing, run_test=True)


@pytest.mark.parametrize("name", ["predict", "apredict", "generate", "stream", "scale", "divide"])
def test_methods_mirror_the_model(model, name):
    assert inspect.signature(getattr(model, name)) == inspect.signature(getattr(model.model, name))
    assert name in dir(model)


def test_methods_carry_the_models_doc(model):
    assert model.predict.__doc__ == "Repeat text."
    assert "(x: float) -> float" in model.apredict.__doc__  # no docstring: the signature instead


def test_type_errors_are_input_errors(model):
    with pytest.raises(InputError, match="parameter 'text': expected str, got int"):
        model.predict(3)
    with pytest.raises(InputError, match="times"):
        model.predict("a", times="2")
    with pytest.raises(InputError):
        model.predict("a", 2, "+")  # sep is keyword-only
    with pytest.raises(InputError, match="unexpected"):
        model.predict("a", colour="red")
    with pytest.raises(InputError, match="item 1"):
        list(model.stream(["a", 2]))
    with pytest.raises(InputError, match="iterable"):
        list(model.stream("abc"))


def test_error_in_the_callers_inputs_reaches_the_caller(model):
    def inputs():
        yield "a"
        raise KeyError("caller's own bug")

    with pytest.raises(KeyError, match="caller's own bug"):
        list(model.stream(inputs()))
    assert list(model.stream(["b"])) == ["b!"]


def test_model_errors(model):
    with pytest.raises(ModelError) as e:
        model.divide(1, 0)
    assert e.value.type == "ZeroDivisionError" and "division by zero" in e.value.message
    assert "model.py" in e.value.remote_traceback and "return a / b" in e.value.remote_traceback
    assert "jupyter_deploy/runner" not in e.value.remote_traceback

    got = []
    with pytest.raises(ModelError) as e:
        for item in model.fail_after(2):
            got.append(item)
    assert got == [0, 1] and e.value.type == "KeyError"

    with pytest.raises(ModelError) as e:
        model.wrong_return()
    assert "wrong_return()" in str(e.value)
    assert model.divide(1, 2) == 0.5


def test_closing_a_local_stream_runs_the_models_finally(model, tmp_path):
    marker = tmp_path / "closed"
    gen = model.generate(1000, marker=str(marker))
    assert next(gen) == 0
    gen.close()
    wait_for(marker.exists, timeout=10, what="the model's finally")


def test_zero_or_two_model_classes(tmp_path):
    with pytest.raises(ModelDefinitionError, match="exactly one ModelClass subclass.*found 0"):
        load_local("from jupyter_deploy import ModelClass\n\nx = 1\n")
    two = SOURCE + "\n\nclass Other(ModelClass):\n    pass\n"
    with pytest.raises(ModelDefinitionError, match="found 2.*Local.*Other"):
        load_local(two)
    folder = write_model(tmp_path / "two", two)
    with pytest.raises(ModelDefinitionError, match="exactly one ModelClass subclass"):
        load_local(folder)


def test_not_a_model(tmp_path):
    with pytest.raises(ModelDefinitionError, match="neither a model folder"):
        load_local("print('hello')\n")
    with pytest.raises(ModelDefinitionError, match="neither a model folder"):
        load_local(str(tmp_path / "absent"))
    with pytest.raises(ModelDefinitionError, match=r"no 1/model\.py"):
        load_local(tmp_path)


def test_syntax_error_names_the_line():
    with pytest.raises(ModelDefinitionError, match="syntax error.*line 4"):
        load_local("from jupyter_deploy import ModelClass\n\nclass M(ModelClass):\n    def (:\n")


def test_failing_load_model_raises_its_error():
    source = SOURCE.replace("self.loaded = True", "raise RuntimeError('no weights')")
    with pytest.raises(RuntimeError, match="no weights"):
        load_local(source)
