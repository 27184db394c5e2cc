"""Model folders made from a cell's source, and loading their class."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_deploy.config import load_config
from jupyter_deploy.errors import ModelDefinitionError
from jupyter_deploy.folder import load_model_class, write_model_folder

CELL = '''
from jupyter_deploy import ModelClass

class Shout(ModelClass):
    @ModelClass.method
    def predict(self, text: str) -> str:
        return text.upper()
'''


def test_a_cell_becomes_a_complete_model_folder(tmp_path: Path) -> None:
    root = write_model_folder(CELL, tmp_path / "shout", model_id="shout-1", requirements=["numpy", "pandas"])
    assert (root / "1" / "model.py").read_text() == CELL
    assert (root / "requirements.txt").read_text() == "numpy\npandas\n"
    config = load_config(root)
    assert (config.model.id, config.model.user_id, config.model.app_id) == ("shout-1", "local", "default")
    cls = load_model_class(root)
    assert cls.__name__ == "Shout" and list(cls.method_specs()) == ["predict"]
    assert not list(root.rglob(".*.*"))  # no temporary files left behind


def test_rewriting_keeps_config_and_requirements_unless_given(tmp_path: Path) -> None:
    root = write_model_folder(CELL, tmp_path / "m", model_id="first", requirements="numpy")
    write_model_folder(CELL.replace("upper", "lower"), root)
    assert load_config(root).model.id == "first"
    assert (root / "requirements.txt").read_text() == "numpy\n"
    assert "lower" in (root / "1" / "model.py").read_text()


@pytest.mark.parametrize("source, found", [
    ("x = 1\n", "found 0"),
    (CELL + CELL.replace("Shout", "Whisper"), "found 2: Shout, Whisper"),
])
def test_a_cell_needs_exactly_one_model_class(tmp_path: Path, source: str, found: str) -> None:
    with pytest.raises(ModelDefinitionError, match=found):
        write_model_folder(source, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ModelDefinitionError, match=r"syntax error in .*line 3"):
        write_model_folder("import os\n\ndef f(:\n", tmp_path / "m")


def test_two_versions_of_one_model_load_side_by_side(tmp_path: Path) -> None:
    one = load_model_class(write_model_folder(CELL, tmp_path / "a"))
    two = load_model_class(write_model_folder(CELL.replace("upper()", "lower()"), tmp_path / "b"))
    assert one is not two
    assert one().predict("Ab") == "AB" and two().predict("Ab") == "ab"


def test_sibling_modules_of_model_py_import(tmp_path: Path) -> None:
    root = write_model_folder(CELL.replace("return text.upper()", "return helpers.shout(text)")
                              .replace("from jupyter_deploy", "import helpers\nfrom jupyter_deploy"),
                              tmp_path / "m")
    (root / "1" / "helpers.py").write_text("def shout(t):\n    return t.upper() + '!'\n")
    assert load_model_class(root)().predict("a") == "A!"


def test_an_import_time_error_names_the_model_file_and_line(tmp_path: Path) -> None:
    root = write_model_folder(CELL + "\nraise ValueError('bad global')\n", tmp_path / "m")
    with pytest.raises(ModelDefinitionError, match=r"model.py, line 9: ValueError: bad global"):
        load_model_class(root)
