"""``LimitsConfig``: what one user may hold on this daemon (``home/limits.yaml``).

The admin writes the file; the daemon reads it at start. Every refusal names the
limit and its value, so a user knows what to ask the admin for. The admin (user
``local``) has the same limits unless the file gives it others; so has the built-in
user ``platform``, whose deployments the shared nodepool starts on demand.

Besides these, every deployment must fit its nodepool (``min_replicas`` and
``max_replicas`` times what one replica reserves), and the daemon caps the uploads
and exports open at once for all users together (``control._streams``).

Example ``limits.yaml``::

    defaults:             # every user
      max_deployments: 20
      max_replicas: 16
    users:                # what some users get instead (fields not given: the defaults)
      alice: {max_replicas: 64}
    upload_idle_seconds: 30

>>> limits = LimitsConfig.model_validate({"users": {"alice": {"max_replicas": 64}}})
>>> limits.for_user("alice").max_replicas, limits.for_user("bob").max_replicas
(64, 16)
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._base import ConfigModel, _check, number

__all__ = ["LimitsConfig", "UserLimits"]


def _absolute_path(value: object) -> str | None:
    if not isinstance(value, str) or not value.startswith("/"):
        return f"expected an absolute path (or glob pattern) such as /opt/conda/envs/*/bin/python, got {value!r}"
    return None


def _count(maximum: int = 1_000_000) -> object:
    return number(0, maximum, whole=True)


class UserLimits(ConfigModel):
    """One user's limits. 0 means none allowed (the admin's way to bar a user)."""

    max_deployments: Annotated[int, _count()] = Field(20, description="deployments not deleted")
    max_replicas: Annotated[int, _count()] = Field(
        16, description="replicas a user's deployments may ask for together (the sum of their max_replicas)")
    max_versions: Annotated[int, _count()] = Field(500, description="model versions stored, over all models")
    max_upload_mb: Annotated[int, _count(1 << 20)] = Field(4096, description="size of one upload, in MiB")
    max_control_streams: Annotated[int, _count(1024)] = Field(
        4, description="uploads and exports open at once (each holds a daemon thread while it lasts)")
    max_watches: Annotated[int, _count(1024)] = Field(
        16, description="Watch streams open at once (a refused watcher polls instead)")


class _UserOverride(ConfigModel):
    max_deployments: Annotated[int | None, _count()] = None
    max_replicas: Annotated[int | None, _count()] = None
    max_versions: Annotated[int | None, _count()] = None
    max_upload_mb: Annotated[int | None, _count(1 << 20)] = None
    max_control_streams: Annotated[int | None, _count(1024)] = None
    max_watches: Annotated[int | None, _count(1024)] = None


class LimitsConfig(ConfigModel):
    """The daemon's limits: ``defaults`` for every user, ``users`` for exceptions."""

    defaults: UserLimits = UserLimits()
    users: dict[str, _UserOverride] = {}
    upload_idle_seconds: Annotated[float, number(1, 86400)] = Field(
        30.0, description="seconds an upload may send nothing (or an export's reader take nothing) "
        "before the daemon cancels it")
    allowed_interpreters: list[Annotated[str, _check(_absolute_path)]] = Field(
        [], description="interpreters users' replicas may run with besides the daemon's own and the "
                        "environments it builds: absolute paths or glob patterns (* within one segment)")

    def for_user(self, user_id: str) -> UserLimits:
        """The limits that apply to ``user_id``."""
        override = self.users.get(user_id)
        if override is None:
            return self.defaults
        given = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.defaults.model_copy(update=given)
