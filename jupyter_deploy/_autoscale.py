"""A deployment's ``autoscale_config``: checked by ``configs.AutoscaleConfig``, read here.

The control plane validates every deployment config (``AutoscaleConfig`` fills in the
defaults and stores them); the ``%%deploy`` magic and the CLI check their
``--min-replicas``/``--max-replicas`` flags with ``normalize`` before uploading
anything, so all of them say the same thing. The autoscaler and the router read the
stored, already valid settings (``stored``) and ask ``scales``.

Example::

    settings, problems = normalize({"min_replicas": 0, "max_replicas": 3})
    settings["scale_to_zero_delay_seconds"]   # 300.0
    problems                                   # [] (else [(field, problem), ...])
"""

from __future__ import annotations

from typing import Any


def normalize(data: Any) -> tuple[dict, list[tuple[str, str]]]:
    """``autoscale_config`` with defaults filled in, and its problems as ``(field, problem)`` pairs
    (with problems, the settings are the defaults)."""
    from .configs import AutoscaleConfig, validate

    settings, problems = validate(AutoscaleConfig, {} if data is None else data)
    return (settings or AutoscaleConfig()).model_dump(), problems


def stored(config: dict) -> dict:
    """The autoscale settings of a stored deployment config, read as they are: the daemon stored
    them checked, defaults filled in. A row written another way (an older daemon, a test that
    inserts rows) is normalized first."""
    from .configs import AutoscaleConfig

    settings = config.get("autoscale_config")
    if isinstance(settings, dict) and settings.keys() == AutoscaleConfig.model_fields.keys():
        return settings
    return normalize(settings)[0]


def scales(settings: dict) -> bool:
    """Whether the replica count can change with the load (or drop to zero)."""
    return settings["min_replicas"] == 0 or settings["max_replicas"] > settings["min_replicas"]
