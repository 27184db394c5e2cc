"""Nodepool backends: where a compute cluster's replicas run (``base`` has the contract).

A compute cluster's ``cloud_provider`` picks its backend, here and nowhere else:
``local`` (processes on this host) or ``ray`` (actors on a Ray cluster); adding one
is a module beside ``local.py`` and a line in ``backend_for``.

Example::

    backends = Backends(home, detect())
    backend = backends({"cloud_provider": "local"})  # the LocalBackend of this host
"""

from __future__ import annotations

from pathlib import Path

from .._errors import FailedPrecondition
from .._host_info import HostInfo
from .base import (
    Health,
    Node,
    NodepoolBackend,
    ReloadUnreachable,
    ReplicaHandle,
    ReplicaSpec,
    RunAs,
    StartFailed,
)
from .local import LocalBackend
from .ray import RayBackend

__all__ = ["Backends", "Health", "LocalBackend", "Node", "NodepoolBackend", "RayBackend", "ReloadUnreachable",
           "ReplicaHandle", "ReplicaSpec", "RunAs", "StartFailed", "backend_for", "cluster_key"]


def backend_for(cluster_config: dict, home: Path, host: HostInfo) -> NodepoolBackend:
    """A new backend for a compute cluster, by its (validated) config's ``cloud_provider``.

    Raises FailedPrecondition for a provider with no backend.
    """
    provider = cluster_config.get("cloud_provider") or "local"
    if provider == "local":
        return LocalBackend(home, host)
    if provider == "ray":
        return RayBackend(home, cluster_config.get("ray_address", ""))
    raise FailedPrecondition(f"compute clusters with cloud_provider {provider!r} cannot run replicas yet "
                             f"(there is no {provider} backend); use local or ray")


class Backends:
    """The backend of each compute cluster, made on first use and shared by every cluster
    that names the same target (all ``local`` clusters are this host).

    Args:
        home: the control plane's home folder.
        host: this host's capacity.
    """

    def __init__(self, home: Path, host: HostInfo):
        self.home, self.host = Path(home), host
        self._made: dict[tuple[str, str], NodepoolBackend] = {}

    def __call__(self, cluster_config: dict) -> NodepoolBackend:
        """The backend for a cluster's config; FailedPrecondition for a provider with none."""
        key = cluster_key(cluster_config)
        if key not in self._made:
            self._made[key] = backend_for(cluster_config, self.home, self.host)
        return self._made[key]


def cluster_key(cluster_config: dict) -> tuple[str, str]:
    """What a cluster runs replicas on: ``("local", "")``, or ``("ray", address)`` (one backend each)."""
    import os

    provider = cluster_config.get("cloud_provider") or "local"
    if provider == "ray":
        return provider, cluster_config.get("ray_address") or os.environ.get("RAY_ADDRESS", "")
    return provider, ""
