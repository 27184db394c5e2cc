"""The daemon's per-user limits: ``home/limits.yaml`` (see ``configs.limits``), read at start.

Example::

    limits = load(home)
    limits.for_user("alice").max_replicas   # 16 unless the file says otherwise
    refuse("max_replicas", 16, "deployment big with max_replicas 20", "alice")   # raises ResourceExhausted
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ConfigError, DeployError
from ._errors import ResourceExhausted

if TYPE_CHECKING:
    from ..configs.limits import LimitsConfig

FILENAME = "limits.yaml"


def load(home: Path) -> "LimitsConfig":
    """The limits in ``home/limits.yaml``, or the defaults when there is no such file.

    A file that does not validate stops the start with one DeployError listing its problems:
    running with limits other than the admin wrote would be worse.
    """
    from .. import configs
    from ..config import parse_yaml
    from ..configs.limits import LimitsConfig

    path = Path(home) / FILENAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return LimitsConfig()
    try:
        data = parse_yaml(text, str(path))
    except ConfigError as e:
        raise DeployError(str(e)) from None
    limits, problems = configs.validate(LimitsConfig, data or {})
    if problems:
        raise DeployError(f"{path} is not valid: " + "; ".join(f"{p or '(top level)'}: {m}" for p, m in problems))
    return limits


def usage(store: Any, user_id: str) -> dict[str, int]:
    """What ``user_id`` holds now of each counted limit (deployments not deleted, the sum of their
    ``max_replicas``, model versions), read from the store as the checks count them."""
    from .. import _autoscale as autoscale

    rows = store.query("SELECT config_json FROM deployments WHERE user_id = ? AND desired != 'deleted'", (user_id,))
    versions = store.one("SELECT COUNT(*) AS n FROM versions WHERE user_id = ?", (user_id,))["n"]
    return {"max_deployments": len(rows),
            "max_replicas": sum(autoscale.stored(json.loads(r["config_json"] or "{}"))["max_replicas"]
                                for r in rows),
            "max_versions": versions}


def refuse(limit: str, value: int | float, what: str, user: str, now: str = "") -> NoReturn:
    """Raise ResourceExhausted: ``what`` would take ``user`` over ``limit`` (its ``value``);
    ``now`` says what they hold already."""
    held = f" ({now})" if now else ""
    shown = value if isinstance(value, int) else f"{value:g}"
    raise ResourceExhausted(f"{what} would go over user {user}'s limit {limit} = {shown}{held}; "
                            f"ask the admin to raise it in {FILENAME}")
