"""A deployment's ``autoscale_config``: its fields, their defaults, and the checks, in one place.

The control plane validates every deployment config with ``normalize``; the
``%%deploy`` magic and the CLI check their ``--min-replicas``/``--max-replicas``
flags with it before uploading anything, so all three say the same thing.

Example::

    settings, problems = normalize({"min_replicas": 0, "max_replicas": 3})
    settings["scale_to_zero_delay_seconds"]   # 300.0
    problems                                   # [] (else [(field, problem), ...])
"""

from __future__ import annotations

from typing import Any

#: field -> (default, minimum, integer?, meaning). ``max_replicas`` defaults to ``min_replicas`` (at least 1).
FIELDS: dict[str, tuple[Any, float, bool, str]] = {
    "min_replicas": (1, 0, True, ("replicas kept running however idle; 0 lets the deployment scale to "
                                  "zero (state IDLE) and start a replica when a call comes")),
    "max_replicas": (None, 1, True, "the most replicas the autoscaler starts (default: min_replicas, at least 1)"),
    "target_in_flight_per_replica": (2.0, 0.01, False, ("calls in flight per replica the autoscaler aims for: "
                                                        "more for scale_up_delay_seconds adds replicas")),
    "scale_up_delay_seconds": (10.0, 0, False, ("how long the load must stay above the target before "
                                                "replicas are added")),
    "scale_down_delay_seconds": (120.0, 0, False, ("how long the load must stay below what fewer replicas "
                                                   "would carry before replicas are removed")),
    "scale_to_zero_delay_seconds": (300.0, 0, False, ("with min_replicas 0: seconds without a call before "
                                                      "every replica stops")),
}


def normalize(data: Any) -> tuple[dict, list[tuple[str, str]]]:
    """``autoscale_config`` with defaults filled in, and its problems as ``(field, problem)`` pairs."""
    problems: list[tuple[str, str]] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return normalize({})[0], [("", f"expected a mapping, got {type(data).__name__}")]
    for key in data:
        if key not in FIELDS:
            problems.append((str(key), f"unknown field (known: {', '.join(sorted(FIELDS))})"))
    out: dict[str, Any] = {}
    for name, (default, minimum, integer, _) in FIELDS.items():
        value = data.get(name, default)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            problems.append((name, f"expected {kind}, got {type(value).__name__} {value!r}"))
            value = default
        elif value < minimum:
            problems.append((name, f"must be at least {minimum:g}, got {value:g}"))
        out[name] = value if integer or value is None else float(value)
    if out.get("min_replicas") is None:
        out["min_replicas"] = FIELDS["min_replicas"][0]
    if out.get("max_replicas") is None:
        out["max_replicas"] = max(out["min_replicas"], 1)
    elif out["max_replicas"] < out["min_replicas"]:
        problems.append(("max_replicas", f"{out['max_replicas']} is below min_replicas {out['min_replicas']}"))
    return {name: out[name] for name in FIELDS}, problems


def scales(settings: dict) -> bool:
    """Whether the replica count can change with the load (or drop to zero)."""
    return settings["min_replicas"] == 0 or settings["max_replicas"] > settings["min_replicas"]
