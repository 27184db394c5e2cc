"""The id rules of jupyter_deploy.ids, and every path that checks an id agreeing with them."""

from __future__ import annotations

import pytest

from jupyter_deploy import ids
from jupyter_deploy.config import validate_config
from jupyter_deploy.control import _auth, _configs, _registry
from jupyter_deploy.control._errors import InvalidArgument
from jupyter_deploy.control._secrets import Secrets, check_name
from jupyter_deploy.control._store import Store
from jupyter_deploy.errors import ConfigError, IdError

VALUES = [
    "echo1",
    "a.b-c_D9",
    ".dotted",
    "-lead",
    "_lead",
    "with space",
    "a/b",
    "",
    "é",
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "trailing.",
]


@pytest.mark.parametrize(
    ("kind", "value", "valid"),
    [
        ("deployment", "echo1", True),
        ("deployment", "my_model-1.2", True),  # every model id up to 64 characters: never renamed
        ("deployment", "-lead", False),
        ("deployment", "x" * 65, False),
        ("model", "sentiment-v2.1_b", True),
        ("model", ".dotted", False),
        ("model", "-lead", False),
        ("model", "x" * 128, True),
        ("model", "x" * 129, False),
        ("user", "Dot.dash-under_1", True),
        ("user", ".dotted", False),
        ("user", "x" * 65, False),
        ("secret", "_api_key", True),
        ("secret", ".hidden", False),
        ("nodepool", "gpu-pool", True),
    ],
)
def test_each_kind_has_its_rule(kind, value, valid):
    assert (ids.id_problem(kind, value) is None) is valid


def test_messages_name_the_kind_and_say_the_rule():
    with pytest.raises(IdError) as info:
        ids.check_id("user", ".dotted")
    assert str(info.value) == (
        "bad user id '.dotted': use letters, digits, '-', '_' and '.'; start with a letter or digit"
    )
    assert ids.id_problem("deployment", "bad id") == (
        "bad deployment id 'bad id': use letters, digits, '-', '_' and '.'; start with a letter or digit"
    )
    assert ids.id_problem("compute_cluster", "x" * 129).startswith("bad compute cluster id 'xxx")
    assert ids.id_problem("model", "x" * 129).endswith("at most 128 characters, got 129")
    with pytest.raises(InvalidArgument, match="bad model_id"):
        ids.check_id("model", "a b", label="model_id", error=InvalidArgument)


def _accepts(check) -> bool:
    try:
        check()
    except (ConfigError, InvalidArgument, IdError):
        return False
    return True


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("ids") / "state.db")


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    return Secrets(tmp_path_factory.mktemp("secrets"))


def _paths(kind: str, value: str, store: Store, secrets: Secrets) -> dict[str, object]:
    """Every place that checks an id of ``kind``, as a call that raises on a bad ``value``."""
    deployment = {"worker": {"model": {"id": "m"}}}
    paths = {
        "model": {
            "config.yaml model.id": lambda: validate_config({"model": {"id": value}}),
            "deployment config worker.model.id": lambda: _configs.deployment_config(
                {"worker": {"model": {"id": value or None}}}, caller="local"
            ),
            "registry": lambda: _registry.check_id(value, "model_id"),
        },
        "user": {
            "config.yaml model.user_id": lambda: validate_config(
                {"model": {"id": "m", "user_id": value}}
            ),
            "deployment config worker.model.user_id": lambda: _configs.deployment_config(
                {"worker": {"model": {"id": "m", "user_id": value}}}, caller="local"
            ),
            "registry": lambda: _registry.check_id(value, "user_id"),
            "create_user": lambda: _auth.create_user(store, b"k" * 32, value),
            "secrets folder": lambda: secrets._dir(value),
        },
        "app": {
            "config.yaml model.app_id": lambda: validate_config(
                {"model": {"id": "m", "app_id": value}}
            ),
            "deployment config worker.model.app_id": lambda: _configs.deployment_config(
                {"worker": {"model": {"id": "m", "app_id": value}}}, caller="local"
            ),
            "registry": lambda: _registry.check_id(value, "app_id"),
        },
        "secret": {
            "set_secret": lambda: check_name(value),
            "deployment config secrets[0].id": lambda: _configs.deployment_config(
                {**deployment, "secrets": [{"id": value, "env_var": "API_KEY"}]}, caller="local"
            ),
        },
        "deployment": {"daemon": lambda: _configs.check_id("deployment", value)},
        "nodepool": {"daemon": lambda: _configs.check_id("nodepool", value)},
        "compute_cluster": {"daemon": lambda: _configs.check_id("compute_cluster", value)},
    }
    return paths[kind]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize(
    "kind", ["model", "user", "app", "secret", "deployment", "nodepool", "compute_cluster"]
)
def test_every_path_accepts_exactly_what_the_rule_accepts(kind, value, store, secrets):
    expected = ids.id_problem(kind, value) is None
    verdicts = {
        name: _accepts(check) for name, check in _paths(kind, value, store, secrets).items()
    }
    assert verdicts == dict.fromkeys(verdicts, expected), (kind, value, verdicts)


def test_as_deployment_id_keeps_letters_and_digits():
    assert ids.as_deployment_id("sentiment-v2.1") == "sentimentv21"
    assert ids.id_problem("deployment", ids.as_deployment_id("my_model-3")) is None
