"""``ComputeClusterConfig`` and ``NodepoolConfig``: where deployments run."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from ..config import parse_quantity
from ._base import ConfigModel, ident, number, problem, text
from .model import Quantity

__all__ = ["ComputeClusterConfig", "InstanceType", "NodepoolConfig"]


def _provider(value: Any) -> str:
    if value == "ray":
        raise problem("the ray backend is not available yet; use local")
    if value != "local":
        raise problem(f"unknown provider {value!r} (use local; ray is planned)")
    return value


class ComputeClusterConfig(ConfigModel):
    """A compute cluster: the backend its nodepools run on (only ``local`` today).

    ``cloud_provider`` may be written the Clarifai way, ``{id: local}``.

    >>> ComputeClusterConfig.model_validate({"region": "eu"}).cloud_provider
    'local'
    """

    _sort_known: ClassVar[bool] = True

    cloud_provider: Annotated[
        Literal["local"],
        BeforeValidator(_provider),
        WithJsonSchema(
            {
                "anyOf": [
                    {"enum": ["local"]},
                    {"type": "object", "properties": {"id": {"enum": ["local"]}}},
                ]
            }
        ),
    ] = "local"
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
    this host, and a nodepool cannot promise more than the host has.

    >>> NodepoolConfig.model_validate({"instance_type": {"cpus": 4, "memory": "8Gi"}}).max_instances
    1
    """

    _sort_known: ClassVar[bool] = True

    instance_type: InstanceType = InstanceType()
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
                    f"{memory:.0f} bytes is more than this host has ({host.memory})",
                )
            )
        gpus = given.get("accelerators")
        if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > len(host.gpus):
            out.append(
                (
                    ("instance_type", "accelerators"),
                    f"{gpus} GPU(s) asked, this host has {len(host.gpus)}",
                )
            )
        return out
