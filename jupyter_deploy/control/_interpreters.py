"""Which Python interpreters replicas may run with: the ones the admin allowed.

An interpreter path reaches the daemon from a client (an upload records the uploading
interpreter; a deployment's ``python:`` names one) and the daemon then executes it. So it is
checked where it comes in (``UploadModel``, ``Create``/``Update`` of a deployment) and again
before a replica starts (the allowlist may have shrunk since):

- it is an absolute path (a bare name would be looked up on the daemon's PATH: ``sh``);
- it is the daemon's own interpreter (or another name of it in the same ``bin`` folder), an
  environment the daemon builds for a model's requirements (``home/envs/<hash>/bin/python``),
  or matches a pattern of ``allowed_interpreters`` in ``home/limits.yaml`` (``*`` matches
  within one path segment);
- what the admin (and the platform user, whose models only the admin uploads) names is
  allowed: the admin owns the daemon's host and its account, and could run it anyway.

Example::

    interpreters = Interpreters(home, ["/opt/conda/envs/*/bin/python"])
    interpreters.check("/opt/conda/envs/torch/bin/python", "bob", "the upload's interpreter")
    interpreters.check("/bin/sh", "bob", "...")   # InvalidArgument naming the path and limits.yaml
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from ._access import ADMIN, PLATFORM
from ._errors import InvalidArgument

#: The users whose interpreters are taken as they are (the admin's own choice).
TRUSTED = frozenset({ADMIN, PLATFORM})
_PYTHON_NAME = re.compile(r"python(3(\.\d+)?)?")


def _segments_match(path: str, pattern: str) -> bool:
    # fnmatch's * also matches "/": compared segment by segment, /opt/*/python cannot
    # reach /opt/a/../../tmp/x/python (paths are normalized first, too).
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


class Interpreters:
    """The interpreters this daemon runs replicas with (see the module docstring).

    Args:
        home: the daemon's home (its model environments are under ``home/envs``).
        patterns: ``allowed_interpreters`` from ``limits.yaml``: absolute paths or glob patterns.
    """

    def __init__(self, home: Path, patterns: Iterable[str] = ()):
        self.envs = os.path.normpath(os.path.abspath(Path(home) / "envs"))
        self.patterns = [os.path.normpath(p) for p in patterns]
        self.own = os.path.normpath(sys.executable)

    def allowed(self, path: str) -> bool:
        """Whether ``path`` (absolute, normalized) is one of the allowed interpreters."""
        folder, name = os.path.split(path)
        if path == self.own or (folder == os.path.dirname(self.own) and _PYTHON_NAME.fullmatch(name)):
            return True
        env_parent, _, rest = folder.rpartition("/")
        if rest == "bin" and os.path.dirname(env_parent) == self.envs and _PYTHON_NAME.fullmatch(name):
            return True
        return any(_segments_match(path, p) for p in self.patterns)

    def check(self, path: str, chooser: str, what: str, exists: bool = True) -> str:
        """``path`` normalized, if ``chooser`` may run replicas with it; else InvalidArgument.

        ``""`` (none named: the daemon's own) passes. ``what`` names where the path came from,
        for the error ("the upload's interpreter", "deployment config python"). With ``exists``
        an allowed path must also be an executable file here (not so for an upload of the
        admin's, which may come from another host and name the interpreter there: the backend
        then uses its own).
        """
        if not path:
            return ""
        if len(path) > 4096 or "\0" in path:
            raise InvalidArgument(f"{what} is not a path")
        if not os.path.isabs(path):
            raise InvalidArgument(f"{what} {path!r} is not an absolute path; name the interpreter's full "
                                  f"path (for example {self.own})")
        normal = os.path.normpath(path)
        if chooser not in TRUSTED and not self.allowed(normal):
            raise InvalidArgument(
                f"{what} {path} is not allowed on this daemon: replicas run with the daemon's own "
                f"interpreter ({self.own}), an environment it builds from a model's requirements.txt, "
                "or one the admin lists under allowed_interpreters in limits.yaml (ask the admin to "
                "add it there, or name an allowed one)")
        if exists and not (os.path.isfile(normal) and os.access(normal, os.X_OK)):
            raise InvalidArgument(f"{what} {path} is not an executable file on the daemon's host")
        return normal
