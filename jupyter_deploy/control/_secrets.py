"""Users' secrets: values kept in files of mode 0600, given to runners as environment variables.

A secret's value is stored as ``<root>/<user_id>/<name>`` (folders mode 0700,
files mode 0600, written atomically). Values never go to the store, a log,
an error message or any listing: only names and times leave this module,
except through ``value()``, which the scheduler alone calls to build a
runner's environment.

Example::

    secrets = Secrets(home / "secrets")
    secrets.set("local", "api_key", "s3cr3t")
    secrets.names("local")          # [("api_key", 1718000000.0)]
    secrets.value("local", "api_key")
    secrets.delete("local", "api_key")
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import ids
from ._auth import write_atomic
from ._errors import InvalidArgument, NotFound

#: Largest value accepted, in bytes.
MAX_VALUE_BYTES = 64 << 10


def check_name(name: str) -> str:
    """``name`` if it is a valid secret name (``jupyter_deploy.ids``); InvalidArgument otherwise."""
    return ids.check_id("secret", name, label="secret name", error=InvalidArgument)


def hint(name: str) -> str:
    """The reason a deployment gives when the secret ``name`` does not exist."""
    return f"secret {name} not found; set it with client.set_secret({name!r}, ...)"


#: Matches a ``hint()``: the scheduler clears its note once the secret exists.
HINT_RE = re.compile(r"^secret \S+ not found; set it with client\.set_secret\(")


class Secrets:
    """Secret values of every user under ``root`` (one folder per user)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, user_id: str) -> Path:
        ids.check_id("user", user_id, error=InvalidArgument)  # never a path outside root
        return self.root / user_id

    def _path(self, user_id: str, name: str) -> Path:
        return self._dir(user_id) / check_name(name)

    def set(self, user_id: str, name: str, value: str) -> float:
        """Create or replace a secret; returns its update time."""
        path = self._path(user_id, name)
        if not isinstance(value, str):
            raise InvalidArgument(f"secret {name}: the value must be text")
        data = value.encode()
        if not data:
            raise InvalidArgument(f"secret {name}: the value is empty")
        if len(data) > MAX_VALUE_BYTES:
            raise InvalidArgument(f"secret {name}: the value is {len(data)} bytes; at most "
                                  f"{MAX_VALUE_BYTES} are accepted")
        if "\0" in value:
            raise InvalidArgument(f"secret {name}: the value contains a NUL character, which an "
                                  "environment variable cannot hold")
        for folder in (self.root, path.parent):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        write_atomic(path, data, mode=0o600)
        return path.stat().st_mtime

    def names(self, user_id: str) -> list[tuple[str, float]]:
        """``(name, updated_at)`` of the user's secrets, by name; never their values."""
        folder = self._dir(user_id)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        return sorted((e.name, e.stat().st_mtime) for e in entries
                      if e.is_file(follow_symlinks=False) and not ids.rule_problem("secret", e.name))

    def exists(self, user_id: str, name: str) -> bool:
        return self._path(user_id, name).is_file()

    def delete(self, user_id: str, name: str) -> None:
        """Remove a secret; NotFound if the user has none by that name."""
        try:
            self._path(user_id, name).unlink()
        except FileNotFoundError:
            raise NotFound(f"secret {name} not found") from None

    def value(self, user_id: str, name: str) -> str:
        """The value (for the scheduler only: it goes into a runner's environment, nowhere else)."""
        try:
            return self._path(user_id, name).read_bytes().decode()
        except FileNotFoundError:
            raise NotFound(hint(name)) from None

    def environment(self, user_id: str, specs: list[dict]) -> dict[str, str]:
        """``{env_var: value}`` for a deployment's ``secrets`` config; NotFound naming the first missing."""
        return {spec["env_var"]: self.value(user_id, spec["id"]) for spec in specs or []}
