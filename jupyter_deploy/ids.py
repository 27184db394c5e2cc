"""The rules for ids, in one place: every path that checks an id asks this module.

The daemon, the client, the CLI, the magics and the config files all call
``id_problem`` or ``check_id``, so no path accepts an id that another refuses:

- deployments: letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64
  (a deployment takes its model's id unless given one, so every model id but a long one is one);
- users: letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64;
- secrets: letters, digits, '-', '_' and '.', not starting with '.', at most 128;
- every other id (app, model, compute cluster, nodepool, concept): letters, digits,
  '-', '_' and '.', starting with a letter or digit, at most 128.

Example::

    >>> check_id("model", "sentiment-v2")
    'sentiment-v2'
    >>> check_id("user", ".dotted")
    Traceback (most recent call last):
    ...
    jupyter_deploy.errors.IdError: bad user id '.dotted': use letters, digits, '-', '_' and '.'; \
start with a letter or digit
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import IdError

__all__ = ["IdRule", "as_deployment_id", "check_id", "default_deployment_id", "id_problem", "id_rule",
           "model_name", "rule_problem"]


@dataclass(frozen=True)
class IdRule:
    """One kind of id: the characters it may use (``pattern``), its length and how to say so."""

    pattern: str
    max_length: int
    help: str

    def problem(self, value: object) -> str | None:
        """Why ``value`` breaks the rule (``'use letters ...'``), or ``None`` if it keeps it."""
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            return self.help
        if len(value) > self.max_length:
            return f"at most {self.max_length} characters, got {len(value)}"
        return None


_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME_HELP = "use letters, digits, '-', '_' and '.'; start with a letter or digit"

#: The rule of every id kind that is not the default (``_DEFAULT``).
_RULES = {
    "deployment": IdRule(_NAME, 64, _NAME_HELP),
    # 64, not 128: a user id is also a folder name and a token's owner, and was always this short.
    "user": IdRule(_NAME, 64, _NAME_HELP),
    # Secret names were always allowed to start with '_' or '-' ('_api_key'); never with '.'.
    "secret": IdRule(
        r"[A-Za-z0-9_-][A-Za-z0-9._-]*",
        128,
        "use letters, digits, '_', '-' and '.'; do not start with '.', e.g. 'api_key'",
    ),
}
_DEFAULT = IdRule(_NAME, 128, _NAME_HELP)


def id_rule(kind: str) -> IdRule:
    """The rule for ids of ``kind`` (``"deployment"``, ``"user"``, ``"model"``, ...)."""
    return _RULES.get(kind, _DEFAULT)


def rule_problem(kind: str, value: object) -> str | None:
    """Why ``value`` is not a valid ``kind`` id, without naming it (config files add the path)."""
    return id_rule(kind).problem(value)


def id_problem(kind: str, value: object, label: str = "") -> str | None:
    """The one-line refusal of a bad ``kind`` id, or ``None`` if ``value`` is valid.

    ``label`` names the id in the message (default ``"<kind> id"``, e.g. ``"compute cluster id"``).

    >>> id_problem("deployment", "bad id")
    "bad deployment id 'bad id': use letters, digits, '-', '_' and '.'; start with a letter or digit"
    """
    problem = rule_problem(kind, value)
    if problem is None:
        return None
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return f"bad {label or kind.replace('_', ' ') + ' id'} {shown}: {problem}"


def check_id(kind: str, value: object, label: str = "", error: type[Exception] = IdError) -> str:
    """``value`` if it is a valid ``kind`` id; else raise ``error`` with ``id_problem``'s message.

    The daemon passes its gRPC error class (``error=InvalidArgument``); everything else
    gets ``jupyter_deploy.errors.IdError``.
    """
    problem = id_problem(kind, value, label)
    if problem is not None:
        raise error(problem)
    return value  # type: ignore[return-value]  # a valid id is a str


def model_name(user_id: str, app_id: str, model_id: str) -> str:
    """How every message names a model: ``user/app/models/model`` (as its URL does).

    >>> model_name("local", "default", "echo")
    'local/default/models/echo'
    """
    return f"{user_id}/{app_id}/models/{model_id}"


def default_deployment_id(model_id: str, option: str = "deployment_id") -> str:
    """The id a model's deployment takes when none is given: the model's own id, never another.

    A model id that is no valid deployment id (one over 64 characters) raises IdError saying
    the rule and ``option``, the way to give one.

    >>> default_deployment_id("my_model-1")
    'my_model-1'
    """
    problem = id_problem("deployment", model_id, "deployment id")
    if problem is None:
        return model_id
    raise IdError(f"{problem}; a deployment takes its model's id unless given one: give one with {option}")


def as_deployment_id(name: str) -> str:
    """A deployment id made from another id: ``name`` with all but letters and digits removed.

    >>> as_deployment_id("sentiment-v2")
    'sentimentv2'
    """
    return re.sub(r"[^A-Za-z0-9]", "", name)
