"""GPUs, memory and CPU reserved per replica on this host, across every deployment.

A replica gets whole GPUs of an eligible type that no other replica holds (its
row's ``gpus``), when its version asks for memory, a share of the host's memory
that the replicas already there leave, and its cores (``Needs.cpu``: what its
version requests, at least ``_resources.MIN_CPU``) out of the host's. So the host
never runs more replicas than it can hold, however many a deployment asks for.
What a replica asks for comes from its version's config (``_resources.needs_from``),
cached per version, since versions are immutable.

Example::

    placement = Placement(store, detect())
    needs = placement.needs("v-3f2a")
    gpus, why = placement.allocate("local", 1, needs)   # ("0", "") or (None, "waiting for 1 GPU(s): ...")
"""

from __future__ import annotations

import json
from collections.abc import Collection

from ._host_info import HostInfo
from ._resources import Needs, describe_gpus, eligible, needs_from, never_fits
from ._store import Store


class Placement:
    """Reserves GPUs and memory of ``host`` for replicas, from the replica rows in ``store``."""

    def __init__(self, store: Store, host: HostInfo):
        self.store, self.host = store, host
        self._needs: dict[str, Needs] = {}

    def needs(self, version_id: str) -> Needs:
        """What one replica of a version asks for; LookupError when the version is gone."""
        if version_id not in self._needs:
            row = self.store.one("SELECT config_json, python FROM versions WHERE id = ?", (version_id,))
            if row is None:
                raise LookupError(f"version {version_id} no longer exists")
            self._needs[version_id] = needs_from(json.loads(row["config_json"] or "{}"), python=row["python"])
        return self._needs[version_id]

    def allocate(self, user_id: str, count: int, needs: Needs,
                 ignore: Collection[str] = ()) -> tuple[str | None, str]:
        """``(gpus, "")`` for one more replica of a deployment of ``user_id`` (comma-separated
        indices), or ``(None, why it must wait)``; replicas in ``ignore`` count as gone."""
        rows = [r for r in self.store.query(_ON_THIS_HOST) if r["id"] not in ignore]
        holders: dict[int, str] = {}
        for r in rows:
            name = r["deployment_id"] if r["user_id"] == user_id else f"{r['user_id']}/{r['deployment_id']}"
            for index in gpu_list(r["gpus"]):
                holders[index] = name
        usable = [g.index for g in eligible(self.host.gpus, needs)]
        free = [i for i in usable if i not in holders]
        if len(free) < count:
            users = ", ".join(sorted({holders[i] for i in usable if i in holders}))
            if not free:
                return None, f"waiting for {describe_gpus(count, needs)}: all {len(usable)} in use by {users}"
            return None, (f"waiting for {describe_gpus(count, needs)}: only {len(free)} of {len(usable)} free "
                          f"(the others are in use by {users})")
        held = [self._held(r["version_id"]) for r in rows]
        cpus = sum(n.cpu for n in held)
        if cpus + needs.cpu > self.host.cpus + 1e-9:
            return None, (f"waiting for {needs.cpu:g} CPU: {cpus:g} of {self.host.cpus:g} CPUs are reserved by "
                          f"{len(rows)} replica(s)")
        if needs.memory:
            reserved = sum(n.memory for n in held)
            if reserved + needs.memory > self.host.memory:
                return None, (f"waiting for {_gib(needs.memory)} of memory: {_gib(reserved)} of "
                              f"{_gib(self.host.memory)} is reserved by running replicas")
        return ",".join(str(i) for i in free[:count]), ""

    def _held(self, version_id: str) -> Needs:
        # A replica of a version deleted under it still holds what its process holds: the minimum.
        try:
            return self.needs(version_id)
        except LookupError:
            return Needs(python="", num_accelerators=0, accelerator_memory=0, memory=0)

    def never_fits(self, count: int, needs: Needs) -> str:
        """Why one replica asking for ``count`` GPUs can never fit on this host, or ""."""
        return never_fits(count, needs, self.host)


#: The replicas that run on this host: those of clusters whose backend does not place its own (Ray's
#: replicas hold nothing here).
_ON_THIS_HOST = """
    SELECT r.id, r.user_id, r.deployment_id, r.version_id, r.gpus FROM replicas r
    JOIN deployments d ON d.user_id = r.user_id AND d.id = r.deployment_id
    LEFT JOIN compute_clusters c ON c.user_id = d.user_id AND c.id = d.compute_cluster_id
    WHERE COALESCE(json_extract(c.config_json, '$.cloud_provider'), 'local') = 'local'
"""


def gpu_list(gpus: str) -> list[int]:
    """The indices in a replica row's ``gpus`` ("0,2" -> [0, 2])."""
    return [int(i) for i in gpus.split(",") if i]


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"
