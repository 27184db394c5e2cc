"""Tests of jupyter_deploy.config: quantities, config.yaml checking, loading, dumping."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from jupyter_deploy.config import (
    Checkpoints,
    ComputeInfo,
    ConceptInfo,
    ModelConfig,
    ModelInfo,
    default_config,
    dump_config,
    load_config,
    parse_config,
    parse_quantity,
    validate_config,
)
from jupyter_deploy.errors import ConfigError

# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("500m", 0.5),
        ("13Gi", 13 * 2**30),
        ("1500Mi", 1500 * 2**20),
        ("64Ki", 64 * 2**10),
        ("1Ti", 2**40),
        ("1G", 1e9),
        ("3k", 3e3),
        ("5M", 5e6),
        ("2T", 2e12),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("0", 0.0),
        (2, 2.0),
        (0.25, 0.25),
    ],
)
def test_parse_quantity_valid(value, expected):
    assert parse_quantity(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        -1,
        -0.5,
        "abc",
        "12GB",
        "1.5.2",
        "",
        " 2",
        "2 Gi",
        "Gi",
        True,
        False,
        None,
        [1],
        "nan",
        float("inf"),
    ],
)
def test_parse_quantity_invalid(value):
    with pytest.raises(ValueError, match=r"bad quantity .*e\.g\. '2', '500m', '13Gi'"):
        parse_quantity(value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M"]))
def test_parse_quantity_integer_with_suffix(number, suffix):
    factor = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6}[suffix]
    assert parse_quantity(f"{number}{suffix}") == number * factor


# --------------------------------------------------------------------------- valid configs

FULL = """\
model:
  id: sentiment
  user_id: alice
  app_id: nlp
  model_type_id: text-to-text
build_info:
  python_version: "3.11"
inference_compute_info:
  cpu_limit: "2"
  cpu_requests: 500m
  cpu_memory: 13Gi
  cpu_memory_requests: 1500Mi
  num_accelerators: 1
  accelerator_type: ["NVIDIA-*"]
  accelerator_memory: 15Gi
checkpoints:
  type: huggingface
  repo_id: org/sentiment-model
  revision: v1.0
  hf_token: secret-token
  when: upload
concepts:
  - {id: pos, name: positive}
  - {id: neg, name: negative}
"""


def test_full_config_parses_into_dataclasses():
    cfg = parse_config(FULL)
    assert cfg.model == ModelInfo(
        id="sentiment", user_id="alice", app_id="nlp", model_type_id="text-to-text"
    )
    assert cfg.inference_compute_info == ComputeInfo(
        cpu_limit=2.0,
        cpu_requests=0.5,
        cpu_memory=13 * 2**30,
        cpu_memory_requests=1500 * 2**20,
        num_accelerators=1,
        accelerator_type=("NVIDIA-*",),
        accelerator_memory=15 * 2**30,
    )
    assert cfg.checkpoints == Checkpoints(
        type="huggingface",
        repo_id="org/sentiment-model",
        revision="v1.0",
        hf_token="secret-token",
        when="upload",
    )
    assert cfg.concepts == (ConceptInfo("pos", "positive"), ConceptInfo("neg", "negative"))


def test_minimal_config_gets_defaults():
    cfg = validate_config({"model": {"id": "m"}})
    assert cfg == ModelConfig(model=ModelInfo(id="m"))
    assert (cfg.model.user_id, cfg.model.app_id, cfg.model.model_type_id) == (
        "local",
        "default",
        "any-to-any",
    )
    assert cfg.inference_compute_info.num_accelerators == 0
    assert cfg.checkpoints is None


def test_build_info_is_accepted_with_a_note():
    cfg = parse_config(FULL)
    assert cfg.notes == (
        (
            "config.yaml: build_info: ignored (jupyter_deploy builds no images; "
            "the runner uses the model's requirements.txt)"
        ),
    )
    assert validate_config({"model": {"id": "m"}}).notes == ()


def test_hf_token_is_not_in_repr():
    ckpt = Checkpoints(type="huggingface", repo_id="a/b", hf_token="secret-token")
    assert "secret-token" not in repr(ckpt)


def test_single_accelerator_type_string_is_a_list_of_one():
    cfg = validate_config(
        {"model": {"id": "m"}, "inference_compute_info": {"accelerator_type": "NVIDIA-A10G"}}
    )
    assert cfg.inference_compute_info.accelerator_type == ("NVIDIA-A10G",)


def test_local_checkpoints_keep_path_as_written():
    cfg = validate_config({"model": {"id": "m"}, "checkpoints": {"type": "local", "path": "w"}})
    assert cfg.checkpoints == Checkpoints(type="local", path="w", when="runtime")


# --------------------------------------------------------------------------- round trip


def test_round_trip_to_dict_and_back():
    cfg = parse_config(FULL)
    data = cfg.to_dict()
    assert "build_info" not in data
    assert data["inference_compute_info"]["cpu_memory"] == 13 * 2**30
    again = validate_config(data)
    assert again == ModelConfig(
        model=cfg.model,
        inference_compute_info=cfg.inference_compute_info,
        checkpoints=cfg.checkpoints,
        concepts=cfg.concepts,
    )
    # and through YAML text, the way a model folder stores it
    assert parse_config(dump_config(data)) == again


def test_round_trip_local_checkpoint_and_minimal():
    for data in (
        {"model": {"id": "m"}, "checkpoints": {"type": "local", "path": "w", "when": "upload"}},
        {"model": {"id": "m"}},
    ):
        cfg = validate_config(data)
        assert validate_config(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- errors


def errors_of(data, filename="config.yaml"):
    with pytest.raises(ConfigError) as info:
        validate_config(data, filename)
    return info.value.errors


def test_four_mistakes_give_four_lines_each_naming_its_field(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "model:\n"
        "  id: my model\n"
        "  foo: 1\n"
        "inference_compute_info:\n"
        "  cpu_memory: 12GB\n"
        "concepts:\n"
        "  - {id: a, name: A}\n"
        "  - {id: b, name: B}\n"
        "  - {name: C}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    path = tmp_path / "config.yaml"
    assert info.value.errors == [
        (
            f"{path}: model.id: bad id 'my model' (use letters, digits, '-', '_' and '.'; "
            "start with a letter or digit)"
        ),
        f"{path}: model.foo: unknown field (known: id, user_id, app_id, model_type_id, visibility)",
        (
            f"{path}: inference_compute_info.cpu_memory: bad quantity '12GB' (use a number >= 0 "
            "with an optional suffix m, k, M, G, T, Ki, Mi, Gi or Ti, e.g. '2', '500m', '13Gi')"
        ),
        f"{path}: concepts[2].id: required (e.g. 'cat')",
    ]
    assert str(info.value) == "\n".join(info.value.errors)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "config.yaml: model: required section"),
        ({"model": "m"}, "config.yaml: model: expected a mapping, got str 'm'"),
        ({"model": {}}, "config.yaml: model.id: required"),
        ({"model": {"id": None}}, "config.yaml: model.id: required"),
        ({"model": {"id": 3}}, "config.yaml: model.id: expected a string, got int 3"),
        ({"model": {"id": "-m"}}, "config.yaml: model.id: bad id '-m'"),
        ({"model": {"id": ""}}, "config.yaml: model.id: bad id ''"),
        ({"model": {"id": "a" * 129}}, "config.yaml: model.id: bad id 'aaa"),
        ({"model": {"id": "m", "user_id": "a/b"}}, "config.yaml: model.user_id: bad id 'a/b'"),
        (
            {"model": {"id": "m", "app_id": True}},
            "config.yaml: model.app_id: expected a string, got bool True",
        ),
        (
            {"model": {"id": "m"}, "extra": 1},
            (
                "config.yaml: extra: unknown section (known: model, inference_compute_info, "
                "checkpoints, concepts, build_info)"
            ),
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": {"gpus": 1}},
            "config.yaml: inference_compute_info.gpus: unknown field",
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": [1]},
            "config.yaml: inference_compute_info: expected a mapping, got list [1]",
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": {"cpu_limit": -1}},
            "config.yaml: inference_compute_info.cpu_limit: bad quantity -1",
        ),
        (
            {
                "model": {"id": "m"},
                "inference_compute_info": {"cpu_limit": "1", "cpu_requests": "2"},
            },
            "config.yaml: inference_compute_info.cpu_requests: 2 is more than cpu_limit 1",
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": {"num_accelerators": 1.5}},
            (
                "config.yaml: inference_compute_info.num_accelerators: expected a whole number >= 0, "
                "got float 1.5"
            ),
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": {"num_accelerators": -1}},
            "config.yaml: inference_compute_info.num_accelerators: expected a whole number",
        ),
        (
            {"model": {"id": "m"}, "inference_compute_info": {"accelerator_type": ["A10G", 3]}},
            (
                "config.yaml: inference_compute_info.accelerator_type[1]: expected a non-empty string, "
                "got int 3"
            ),
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"repo_id": "a/b"}},
            "config.yaml: checkpoints.type: required (huggingface or local)",
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"type": "s3"}},
            "config.yaml: checkpoints.type: unknown type 's3' (use huggingface or local)",
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"type": "huggingface"}},
            "config.yaml: checkpoints.repo_id: required",
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"type": "huggingface", "repo_id": "a/b/c"}},
            "config.yaml: checkpoints.repo_id: bad repo_id 'a/b/c'",
        ),
        (
            {
                "model": {"id": "m"},
                "checkpoints": {"type": "huggingface", "repo_id": "a", "when": "never"},
            },
            "config.yaml: checkpoints.when: bad value 'never' (use runtime, upload, build)",
        ),
        (
            {
                "model": {"id": "m"},
                "checkpoints": {"type": "huggingface", "repo_id": "a", "path": "w"},
            },
            "config.yaml: checkpoints.path: only used with type local",
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"type": "local"}},
            "config.yaml: checkpoints.path: required",
        ),
        (
            {"model": {"id": "m"}, "checkpoints": {"type": "local", "path": "w", "repo_id": "a"}},
            "config.yaml: checkpoints.repo_id: only used with type huggingface",
        ),
        (
            {"model": {"id": "m"}, "concepts": {"id": "a"}},
            "config.yaml: concepts: expected a list of {id, name} items, got mapping",
        ),
        (
            {"model": {"id": "m"}, "concepts": ["cat"]},
            "config.yaml: concepts[0]: expected a mapping, got str 'cat'",
        ),
        (
            {"model": {"id": "m"}, "concepts": [{"id": "a"}]},
            "config.yaml: concepts[0].name: required",
        ),
        (
            {"model": {"id": "m"}, "concepts": [{"id": "a", "name": "A", "value": 1}]},
            "config.yaml: concepts[0].value: unknown field (known: id, name)",
        ),
        (
            {
                "model": {"id": "m"},
                "concepts": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}],
            },
            "config.yaml: concepts[1].id: duplicate id 'a' (also concepts[0])",
        ),
    ],
)
def test_each_kind_of_mistake_is_one_line(data, expected):
    errors = errors_of(data)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected)


def test_top_level_must_be_a_mapping():
    assert errors_of(["model"]) == [
        (
            "config.yaml: expected a mapping of sections (model, inference_compute_info, "
            "checkpoints, concepts) at the top level, got list ['model']"
        )
    ]
    assert errors_of(None)[0].startswith("config.yaml: empty file")


def test_filename_starts_each_line():
    errors = errors_of({"model": {"id": "a b"}, "x": 1}, filename="models/m/config.yaml")
    assert len(errors) == 2
    assert all(line.startswith("models/m/config.yaml: ") for line in errors)


def test_yaml_syntax_error_names_line_and_column():
    text = "model:\n  id: m\n  app_id: [unclosed\nconcepts: []\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x/config.yaml")
    (line,) = info.value.errors
    assert line.startswith("x/config.yaml: line 4, column ")
    assert "invalid YAML" in line


def test_yaml_tab_indentation_is_reported():
    with pytest.raises(ConfigError, match=r"config.yaml: line 2, column 1: invalid YAML"):
        parse_config("model:\n\tid: m\n")


# --------------------------------------------------------------------------- files


def test_load_config_from_folder_or_file(tmp_path):
    (tmp_path / "config.yaml").write_text(FULL)
    assert load_config(tmp_path).model.id == "sentiment"
    assert load_config(str(tmp_path / "config.yaml")) == load_config(tmp_path)


def test_missing_config_file_says_which_path_and_what_to_do(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nowhere")
    (line,) = info.value.errors
    assert line.startswith(f"{tmp_path / 'nowhere' / 'config.yaml'}: not found")
    assert "create config.yaml" in line


def test_default_config_is_valid_and_dumps_in_order():
    data = default_config("sentiment", user_id="bob")
    assert validate_config(data).model == ModelInfo(id="sentiment", user_id="bob")
    text = dump_config(data)
    assert text.splitlines()[:3] == ["model:", "  id: sentiment", "  user_id: bob"]
    assert yaml.safe_load(text) == data


def test_default_config_rejects_a_bad_id():
    with pytest.raises(ConfigError, match="model.id: bad id 'my model'"):
        default_config("my model")


def test_deeply_nested_yaml_is_a_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text("model:\n  id: deep\nbuild_info: " + "[" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(tmp_path)
