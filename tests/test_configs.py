"""The typed config models (jupyter_deploy.configs): every problem at once with its path, the
canonical form the daemon stores, the JSON Schemas and what importing them costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_deploy.config import validate_config
from jupyter_deploy.control._configs import cluster_config, deployment_config, nodepool_config
from jupyter_deploy.control._errors import InvalidArgument
from jupyter_deploy.control._host_info import detect
from jupyter_deploy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _lines(call) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        call()
    return str(info.value).splitlines()


def test_every_bad_field_of_a_deployment_is_reported_at_once_with_its_path():
    lines = _lines(
        lambda: deployment_config(
            {
                "worker": {"model": {"user_id": "a b"}},
                "autoscale_config": {"min_replicas": -1, "burst": 2},
                "inference_batcher": {"max_batch_size": 0, "enabled": "yes"},
                "inference_logger": {"mode": "loud", "max_age_seconds": "1d"},
                "transformer": {"enabled": "no"},
                "secrets": [{"id": "bad/name", "env_var": "MODEL_PATH"}],
                "resources": {"num_accelerators": 1.5},
                "drain_seconds": -1,
                "run_test": "sometimes",
                "colour": "red",
            },
            caller="local",
        )
    )
    assert lines == [
        "deployment config: worker.model.id: required: the id of the model to serve",
        (
            "deployment config: worker.model.user_id: bad id 'a b' (use letters, digits, '-', '_' and '.'; "
            "start with a letter or digit)"
        ),
        "deployment config: autoscale_config.min_replicas: must be at least 0, got -1",
        (
            "deployment config: autoscale_config.burst: unknown field (known: max_replicas, min_replicas, "
            "scale_down_delay_seconds, scale_to_zero_delay_seconds, scale_up_delay_seconds, "
            "target_in_flight_per_replica)"
        ),
        "deployment config: drain_seconds: must be at least 0, got -1",
        "deployment config: run_test: expected true or false, got 'sometimes'",
        "deployment config: resources.num_accelerators: expected an integer, got float 1.5",
        (
            "deployment config: secrets[0].id: bad secret name 'bad/name' (use letters, digits, '_', '-' "
            "and '.'; do not start with '.', e.g. 'api_key')"
        ),
        (
            "deployment config: secrets[0].env_var: MODEL_PATH is set by jupyter_deploy itself; "
            "choose another name"
        ),
        (
            "deployment config: inference_logger.mode: unknown mode 'loud' (use none, model_inputs, "
            "predictions, all)"
        ),
        "deployment config: inference_logger.max_age_seconds: expected a number of seconds, got str '1d'",
        "deployment config: transformer.enabled: expected true or false, got 'no'",
        "deployment config: inference_batcher.enabled: expected true or false, got 'yes'",
        "deployment config: inference_batcher.max_batch_size: must be a whole number from 1 to 4096, got 0",
        (
            "deployment config: colour: unknown field (known: autoscale_config, default, description, "
            "drain_seconds, id, inference_batcher, inference_logger, nodepools, python, resources, run_test, "
            "secrets, transformer, worker)"
        ),
    ]


def test_checks_between_fields_are_reported_with_the_field_errors():
    lines = _lines(
        lambda: deployment_config(
            {
                "worker": {"model": {"id": "m"}},
                "autoscale_config": {
                    "min_replicas": 3,
                    "max_replicas": 2,
                    "scale_up_delay_seconds": "x",
                },
                "secrets": [{"id": "a", "env_var": "A"}, {"id": "a", "env_var": "A"}],
            },
            caller="local",
        )
    )
    assert lines == [
        "deployment config: autoscale_config.scale_up_delay_seconds: expected a number, got str 'x'",
        "deployment config: autoscale_config.max_replicas: 2 is below min_replicas 3",
        "deployment config: secrets[1].id: secret a is listed twice",
        "deployment config: secrets[1].env_var: environment variable A is given twice",
    ]
    with pytest.raises(ConfigError) as info:
        validate_config(
            {
                "model": {"id": "m", "visibility": "everyone"},
                "inference_compute_info": {
                    "cpu_limit": "1",
                    "cpu_requests": "2",
                    "num_accelerators": -1,
                },
                "checkpoints": {"type": "local", "repo_id": "a/b"},
                "concepts": [{"id": "a", "name": "A"}, {"id": "a", "name": ""}],
            }
        )
    assert info.value.errors == [
        "config.yaml: model.visibility: must be one of private, public, got 'everyone'",
        "config.yaml: inference_compute_info.num_accelerators: expected a whole number >= 0, got int -1",
        "config.yaml: inference_compute_info.cpu_requests: 2 is more than cpu_limit 1",
        "config.yaml: checkpoints.path: required (a folder, relative to the model folder or absolute)",
        "config.yaml: checkpoints.repo_id: only used with type huggingface",
        "config.yaml: concepts[1].name: must not be empty",
        "config.yaml: concepts[1].id: duplicate id 'a' (also concepts[0])",
    ]


def test_cluster_and_nodepool_configs_report_every_problem():
    assert _lines(lambda: cluster_config({"cloud_provider": "aws", "region": 3, "zone": "a"})) == [
        "compute cluster config: cloud_provider: unknown provider 'aws' (use local or ray)",
        "compute cluster config: region: expected a string, got int 3",
        "compute cluster config: zone: unknown field (known: cloud_provider, description, id, ray_address, region)",
    ]
    assert _lines(lambda: cluster_config({"ray_address": "10.0.0.1:6379"})) == [
        "compute cluster config: ray_address: only used with cloud_provider ray"]
    assert _lines(lambda: cluster_config({"cloud_provider": "ray", "ray_address": "ray://head:10001"}))[0].startswith(
        "compute cluster config: ray_address: 'ray://head:10001' is a Ray Client address; give the GCS address")
    assert _lines(lambda: cluster_config({"cloud_provider": "ray", "ray_address": "head"})) == [
        "compute cluster config: ray_address: expected HOST:PORT (the address `ray start --head` prints), got 'head'"]
    assert cluster_config({"cloud_provider": {"id": "ray"}, "ray_address": "head:6379"})["cloud_provider"] == "ray"
    assert "ray_address" not in cluster_config({})  # a local cluster's config is as it always was
    host = detect()
    lines = _lines(
        lambda: nodepool_config(
            {"instance_type": {"memory": "1Ei", "cpus": "many"}, "max_instances": 0}, host
        )
    )
    assert lines[0].startswith("nodepool config: instance_type.cpus: bad quantity 'many'")
    assert lines[1] == "nodepool config: max_instances: must be at least 1, got 0"
    assert lines[2].startswith("nodepool config: instance_type.memory: ")
    assert "bytes is more than this host has" in lines[2]


def test_the_stored_form_is_canonical_and_validates_back_to_itself():
    given = {
        "worker": {"model": {"id": "echo"}},
        "inference_batcher": True,
        "transformer": False,
        "inference_logger": "all",
        "secrets": [{"id": "k", "env_var": "K"}],
        "resources": {"num_accelerators": 0},
        "autoscale_config": {"min_replicas": 2},
    }
    stored = deployment_config(given, caller="bob")
    assert stored["worker"]["model"] == {
        "id": "echo",
        "user_id": "bob",
        "app_id": "default",
        "model_version": {"id": ""},
    }
    assert stored["inference_batcher"] == {
        "enabled": True,
        "max_batch_size": 32,
        "max_latency_ms": 5.0,
        "timeout_ms": 10_000,
    }
    assert stored["transformer"] == {"enabled": False}
    assert stored["inference_logger"]["mode"] == "all"
    assert stored["autoscale_config"]["max_replicas"] == 2
    assert json.loads(json.dumps(stored)) == stored
    assert deployment_config(json.loads(json.dumps(stored)), caller="someone else") == stored


def test_logger_defaults_are_the_call_logs_and_the_runners():
    from jupyter_deploy.configs import deployment
    from jupyter_deploy.control import _calllog
    from jupyter_deploy.runner import _telemetry

    assert deployment.DEFAULT_MAX_RECORDS == _calllog.DEFAULT_MAX_RECORDS
    assert deployment.DEFAULT_MAX_AGE == _calllog.DEFAULT_MAX_AGE
    assert deployment.DEFAULT_INLINE_BYTES == _telemetry.DEFAULT_INLINE_BYTES


# --------------------------------------------------------------------------- JSON Schema


def _schema(name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_deploy", "config", "schema", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


EXAMPLES = {
    "model": {
        "model": {
            "id": "sentiment",
            "user_id": "local",
            "app_id": "default",
            "model_type_id": "text-to-text",
        },
        "inference_compute_info": {
            "cpu_limit": "2",
            "cpu_memory": "13Gi",
            "num_accelerators": 1,
            "accelerator_type": ["NVIDIA-*"],
            "accelerator_memory": "15Gi",
        },
        "checkpoints": {"type": "huggingface", "repo_id": "distilbert/distilbert-base-uncased"},
        "concepts": [{"id": "pos", "name": "positive"}],
        "build_info": {"python_version": "3.11"},
    },
    "cluster": {"cloud_provider": {"id": "local"}, "region": "local", "description": "my laptop"},
    "nodepool": {
        "instance_type": {"cpus": "500m", "memory": "2Gi", "accelerators": 0},
        "max_instances": 1,
    },
    "deployment": {
        "worker": {"model": {"id": "echo", "user_id": "local", "app_id": "default"}},
        "autoscale_config": {"min_replicas": 0, "max_replicas": 3},
        "inference_logger": "all",
        "inference_batcher": {"max_batch_size": 8},
        "transformer": False,
        "secrets": [{"id": "api_key", "env_var": "API_KEY"}],
        "resources": {"num_accelerators": 0},
    },
}


@pytest.mark.parametrize("name", ["model", "cluster", "nodepool", "deployment"])
def test_config_schema_prints_an_object_schema_a_real_config_validates_against(name):
    result = _schema(name)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["type"] == "object" and "$ref" not in schema and schema["properties"]
    assert schema["additionalProperties"] is False  # unknown fields are errors, as in the daemon
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    assert list(validator.iter_errors(EXAMPLES[name])) == []
    assert list(validator.iter_errors({**EXAMPLES[name], "no_such_field": 1}))


def test_the_schema_of_a_config_yaml_matches_what_load_config_accepts():
    jsonschema = pytest.importorskip("jsonschema")
    from jupyter_deploy.configs import json_schema

    validator = jsonschema.Draft202012Validator(json_schema("model"))
    for quantity, ok in (("500m", True), ("13Gi", True), (2, True), ("12GB", False), (-1, False)):
        data = {"model": {"id": "m"}, "inference_compute_info": {"cpu_memory": quantity}}
        assert validator.is_valid(data) is ok
        try:
            validate_config(data)
            accepted = True
        except ConfigError:
            accepted = False
        assert accepted is ok


def test_config_schema_refuses_an_unknown_name_in_one_line():
    result = _schema("modle")
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.strip()
        == "error: unknown config 'modle' (use model, cluster, nodepool, deployment, limits)"
    )


# --------------------------------------------------------------------------- import cost


def test_importing_jupyter_deploy_does_not_import_pydantic():
    code = (
        "import sys, jupyter_deploy, jupyter_deploy.config, jupyter_deploy.ids; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "[]"
