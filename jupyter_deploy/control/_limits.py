"""The daemon's per-user limits: ``home/limits.yaml`` (see ``configs.limits``), read at start.

Example::

    limits = load(home)
    limits.for_user("alice").max_replicas   # 16 unless the file says otherwise
    refuse("max_replicas", 16, "a deployment of 20 replicas")   # raises ResourceExhausted
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

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


def refuse(limit: str, value: int | float, what: str) -> NoReturn:
    """Raise ResourceExhausted: ``what`` would go over ``limit`` (its ``value``)."""
    raise ResourceExhausted(f"{what} would go over your limit {limit} = {value} "
                            f"(ask the admin to raise it in {FILENAME})")
