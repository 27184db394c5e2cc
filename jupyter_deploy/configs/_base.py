"""What every config model shares: one line per problem, each with its field path.

Pydantic validates; this module turns what it reports into the messages users have
always seen (``model.id: bad id 'a b' (...)``, ``autoscale_config.burst: unknown field
(known: ...)``), never pydantic's own wording. Field checks raise ``problem(...)``;
checks between fields (``_relations``) are reported together with the field errors, so
a file is fixed in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..ids import rule_problem

#: The error type of every message written here (pydantic's own types get translated).
_OURS = "jupyter_deploy"


def problem(message: str) -> PydanticCustomError:
    """The error a validator raises: ``message`` is what the user reads after the field path."""
    # Braces in the message are text ("{id, name}"), not pydantic template fields.
    return PydanticCustomError(_OURS, "{message}", {"message": message})


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}


def describe(value: Any) -> str:
    """``int 3``, ``str 'x'``, ``null``: what a wrong value was, for an error line."""
    if value is None:
        return "null"
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {short(value)}"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_of(loc: tuple[str | int, ...]) -> str:
    """``('concepts', 2, 'id')`` -> ``concepts[2].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class ConfigModel(BaseModel):
    """A config section: unknown fields are errors, YAML ``null`` means "not given".

    Subclasses say how their problems read through the class variables below and
    check relations between fields in ``_relations``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: field -> the whole message when it is missing, e.g. "required (e.g. 'cat')".
    _missing: ClassVar[dict[str, str]] = {}
    #: What an unknown key is called ("unknown field", "unknown section").
    _unknown: ClassVar[str] = "unknown field"
    #: Keys accepted besides the fields (listed among the known ones).
    _also_known: ClassVar[tuple[str, ...]] = ()
    #: List the known fields sorted (else in declaration order).
    _sort_known: ClassVar[bool] = False
    #: Said after "expected a mapping" when the section is not one.
    _mapping_hint: ClassVar[str] = ""

    @classmethod
    def _prepare(cls, data: dict, context: dict) -> dict:
        """The mapping as written, turned into what the fields expect (defaults that depend
        on other fields or on ``context``)."""
        return data

    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """A shorter way to write the section (``transformer: false``) as its mapping."""
        return data

    @classmethod
    def _relations(cls, data: dict, context: dict) -> list[tuple[tuple, str]]:
        """Problems between fields, as ``(loc, message)``; ``data`` is as written (unchecked)."""
        return []

    @classmethod
    def known_fields(cls) -> list[str]:
        names = [*cls.model_fields, *cls._also_known]
        return sorted(names) if cls._sort_known else names

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_per_problem(cls, data: Any, handler: Callable, info: Any) -> Any:
        if isinstance(data, cls):
            return data
        context = info.context or {}
        data = cls._short_form(data)
        errors: list[InitErrorDetails] = []
        if isinstance(data, dict):
            # YAML keys may be numbers, lists, ...: each is a problem of its own (pydantic would
            # raise TypeError on them), and the rest is still checked.
            errors += [_ours((short(k),), f"{cls._unknown}: a key must be "
                             f"a name, got {describe(k)}", k) for k in data if not isinstance(k, str)]
            data = cls._prepare({k: v for k, v in data.items() if v is not None and isinstance(k, str)},
                                context)
        try:
            result = handler(data)
        except ValidationError as exc:
            errors += [cls._translate(error) for error in exc.errors()]
            result = None
        if isinstance(data, dict):
            errors += [_ours(loc, message, data) for loc, message in cls._relations(data, context)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return result

    @classmethod
    def _translate(cls, error: Any) -> InitErrorDetails:
        """One of pydantic's errors about this section, in our words (ours pass unchanged)."""
        kind, loc, value = error["type"], error["loc"], error.get("input")
        if kind == _OURS:
            message = error["ctx"]["message"]
        elif kind == "missing" and len(loc) == 1:
            message = cls._missing.get(str(loc[0]), "required")
        elif kind == "extra_forbidden" and len(loc) == 1:
            message = f"{cls._unknown} (known: {', '.join(cls.known_fields())})"
        elif kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
            message = f"expected a mapping{cls._mapping_hint}, got {describe(value)}"
        else:  # a type no validator of ours checks first: still one line, with its path
            message = f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {describe(value)}"
        return _ours(loc, message, value)


def _ours(loc: tuple, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=problem(message), loc=loc, input=value)


def problems_of(error: ValidationError) -> list[tuple[str, str]]:
    """``[(field path, message), ...]`` of a config model's ValidationError, in order."""
    out = []
    for item in error.errors():
        ctx = item.get("ctx") or {}
        out.append((path_of(item["loc"]), ctx.get("message", item["msg"])))
    return out


# --------------------------------------------------------------------------- field checks
# Each returns a BeforeValidator that refuses a wrong value with the project's wording, so
# pydantic's own type check after it always passes.


def _check(test: Callable[[Any], str | None]) -> BeforeValidator:
    def validate(value: Any) -> Any:
        message = test(value)
        if message:
            raise problem(message)
        return value

    return BeforeValidator(validate)


def text(*, non_empty: bool = False) -> BeforeValidator:
    """A string (``non_empty``: with something besides spaces)."""

    def test(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected a string, got {describe(value)}"
        if non_empty and not value.strip():
            return "must not be empty"
        return None

    return _check(test)


def ident(kind: str, *, what: str = "id") -> BeforeValidator:
    """An id of ``kind`` under the rule of ``jupyter_deploy.ids``: ``bad id 'a b' (use ...)``."""

    def test(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected a string, got {describe(value)}"
        reason = rule_problem(kind, value)
        return f"bad {what} {short(value)} ({reason})" if reason else None

    return _check(test)


def flag() -> BeforeValidator:
    """``true`` or ``false`` (not ``"yes"``, not 1)."""
    return _check(lambda v: None if isinstance(v, bool) else f"expected true or false, got {v!r}")


def number(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    whole: bool = False,
    what: str = "",
    message: str = "",
) -> BeforeValidator:
    """A number (``whole``: an int) within bounds; booleans are not numbers.

    Without ``maximum`` a bad value reads "expected <what>, got ..." or "must be at least";
    with it, "must be a whole number from 1 to 4096, got 0"; ``message`` replaces both.
    """
    kinds = int if whole else (int, float)

    def test(value: Any) -> str | None:
        is_number = isinstance(value, kinds) and not isinstance(value, bool)
        in_range = (
            is_number
            and (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)
        )
        if in_range:
            return None
        if message:
            return f"{message}, got {describe(value)}"
        if maximum is not None:
            return (
                f"must be a {'whole number' if whole else 'number'} from {_bound(minimum)} to "
                f"{_bound(maximum)}, got {value!r}"
            )
        if not is_number:
            return (
                f"expected {what or ('an integer' if whole else 'a number')}, got {describe(value)}"
            )
        return f"must be at least {_bound(minimum)}, got {value:g}"

    return _check(test)


def _bound(value: float | None) -> str:
    # 3600000, not 3.6e+06; 0.01 stays 0.01
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


def one_of(choices: tuple[str, ...], say: Callable[[Any], str]) -> BeforeValidator:
    """A string among ``choices``; ``say(value)`` words the refusal of any other."""

    def test(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected a string, got {describe(value)}"
        return None if value in choices else say(value)

    return _check(test)


def validate(
    cls: type[ConfigModel], data: Any, **context: Any
) -> tuple[Any, list[tuple[str, str]]]:
    """``(model, [])`` if ``data`` is a valid ``cls``, else ``(None, [(path, message), ...])``;
    ``context`` reaches every section's checks (the daemon's ``caller``, ``host``)."""
    try:
        return cls.model_validate(data, context=context), []
    except ValidationError as exc:
        return None, problems_of(exc)
