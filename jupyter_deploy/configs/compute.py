"""``ComputeClusterConfig`` and ``NodepoolConfig``: where deployments run."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from ..config import parse_quantity
from ._base import ConfigModel, ident, number, problem, text
from .model import Quantity

__all__ = ["ComputeClusterConfig", "InstanceType", "NodepoolConfig"]


PROVIDERS = ("local", "ray")


def _provider(value: Any) -> str:
    if value not in PROVIDERS:
        raise problem(f"unknown provider {value!r} (use local or ray)")
    return value


def _ray_address(value: Any) -> str:
    if not isinstance(value, str):
        raise problem(f"expected a string HOST:PORT, got {value!r}")
    if value.startswith("ray://"):
        raise problem(f"{value!r} is a Ray Client address; give the GCS address HOST:PORT that "
                      "`ray start --head` prints (the daemon's machine joins the cluster as a node)")
    host, _, port = value.rpartition(":")
    if value and (not host or not port.isdigit()):
        raise problem(f"expected HOST:PORT (the address `ray start --head` prints), got {value!r}")
    return value


def _labels(value: Any) -> dict:
    if not isinstance(value, dict):
        raise problem(f"expected a mapping of label names to values, got {value!r}")
    bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str) or not k]
    if bad:
        raise problem(f"labels and their values must be strings (quote numbers in YAML): {bad[0]!r}")
    return value


class ComputeClusterConfig(ConfigModel):
    """A compute cluster: the backend its nodepools run on.

    ``local`` is this host; ``ray`` is an existing Ray cluster, reached at
    ``ray_address`` (the GCS address ``ray start --head`` prints; the daemon's
    ``RAY_ADDRESS`` when empty). ``cloud_provider`` may be written the Clarifai
    way, ``{id: ray}``.

    >>> ComputeClusterConfig.model_validate({"region": "eu"}).cloud_provider
    'local'
    >>> ComputeClusterConfig.model_validate({"cloud_provider": {"id": "ray"}, "ray_address": "10.0.0.1:6379"}).ray_address
    '10.0.0.1:6379'
    """

    _sort_known: ClassVar[bool] = True

    cloud_provider: Annotated[
        Literal["local", "ray"],
        BeforeValidator(_provider),
        WithJsonSchema(
            {
                "anyOf": [
                    {"enum": list(PROVIDERS)},
                    {"type": "object", "properties": {"id": {"enum": list(PROVIDERS)}}},
                ]
            }
        ),
    ] = "local"
    ray_address: Annotated[str, BeforeValidator(_ray_address),
                           Field(description="HOST:PORT of the Ray cluster's GCS (cloud_provider ray; "
                                             "default: the daemon's RAY_ADDRESS)")] = ""
    region: Annotated[str, text()] = "local"
    description: Annotated[str, text()] = ""
    # The id travels in the request; a file may repeat it, and it is not stored twice.
    id: Annotated[str | None, ident("compute_cluster")] = Field(default=None, exclude=True)

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        provider = data.get("cloud_provider") or "local"
        if isinstance(provider, dict):  # the Clarifai form: cloud_provider: {id: local}
            provider = provider.get("id", "local")
        return {**data, "cloud_provider": provider}

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        if data.get("ray_address") and data.get("cloud_provider") != "ray":
            return [(("ray_address",), "only used with cloud_provider ray")]
        return []


class InstanceType(ConfigModel):
    """What one instance of a nodepool offers; every field defaults to this host."""

    _sort_known: ClassVar[bool] = True

    cpus: Quantity | None = Field(None, description="CPU cores (default: this host's)")
    memory: Quantity | None = Field(None, description="bytes (default: this host's)")
    accelerators: Annotated[int, number(0, whole=True)] = 0
    accelerator_type: Annotated[str, text()] = ""

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        host = context.get("host")
        if host is None:
            return data
        return {
            "cpus": float(host.cpus),
            "memory": float(host.memory),
            "accelerators": len(host.gpus),
            "accelerator_type": host.gpus[0].name if host.gpus else "",
            **data,
        }


class NodepoolConfig(ConfigModel):
    """A nodepool: its instance type and how many instances it may have.

    The daemon validates with ``context={"host": HostInfo}``: missing fields describe
    this host, and a nodepool cannot promise more than the host has. On a Ray cluster
    ``host`` is the largest node the pool's ``node_labels`` select (``context["where"]``
    says so in messages).

    >>> NodepoolConfig.model_validate({"instance_type": {"cpus": 4, "memory": "8Gi"}}).max_instances
    1
    """

    _sort_known: ClassVar[bool] = True

    instance_type: InstanceType = InstanceType()
    node_labels: Annotated[dict[str, str], BeforeValidator(_labels)] = Field(
        default_factory=dict,
        description="Ray node labels (ray start --labels) a node must have to be in this pool; "
                    "empty: every node (cloud_provider ray only)")
    min_instances: Annotated[int, number(0, whole=True)] = 0
    max_instances: Annotated[int, number(1, whole=True)] = 1
    description: Annotated[str, text()] = ""
    id: Annotated[str | None, ident("nodepool")] = Field(default=None, exclude=True)

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        return {**data, "instance_type": data.get("instance_type", {})}

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        # The local backend is this one host: a nodepool cannot promise more than it has.
        host, given = context.get("host"), data.get("instance_type")
        where = context.get("where", "this host")
        if host is None or not isinstance(given, dict):
            return []
        out: list[tuple[tuple, str]] = []
        try:
            memory = parse_quantity(given["memory"])
        except (KeyError, ValueError):  # not given (this host's), or reported with the field
            memory = None
        if memory is not None and memory > host.memory:
            out.append(
                (
                    ("instance_type", "memory"),
                    f"{memory:.0f} bytes is more than {where} has ({host.memory})",
                )
            )
        gpus = given.get("accelerators")
        if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > len(host.gpus):
            out.append(
                (
                    ("instance_type", "accelerators"),
                    f"{gpus} GPU(s) asked, {where} has {len(host.gpus)}",
                )
            )
        return out
