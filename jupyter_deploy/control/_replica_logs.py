"""The log file a deployment's replicas write their output to, rotated, and read back from the end.

Each deployment has one file, ``home/logs/<user>/<deployment>.log``; every replica
of it appends there. The file is rotated when a replica starts and finds it at
least ``max_bytes`` large: the previous file becomes ``<deployment>.log.1`` (one
older file is kept), and ``tail`` reads across both.

Example::

    log = LogFile.of(home, "local", "echo")
    with log.open() as out:
        out.write(b"starting\\n")
    log.tail(20)  # the last 20 lines, oldest first
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: A log file at least this large is rotated when a replica starts.
DEFAULT_MAX_BYTES = 5 << 20


@dataclass(frozen=True)
class LogFile:
    """One deployment's replica log: ``path``, rotated to ``path.1`` at ``max_bytes``."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def of(cls, home: Path, user_id: str, deployment_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> LogFile:
        """The log of a deployment under the control plane's home folder."""
        return cls(Path(home) / "logs" / user_id / f"{deployment_id}.log", max_bytes)

    @property
    def rotated(self) -> Path:
        """Where the previous file goes on rotation."""
        return self.path.with_name(self.path.name + ".1")

    def open(self) -> BinaryIO:
        """The file, opened to append, rotated first when it is too large.

        Replicas still running keep writing to the file they opened, which is fine,
        since ``tail`` reads both files.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            os.replace(self.path, self.rotated)
        return open(self.path, "ab")

    def remove(self) -> None:
        """Delete the file and the rotated one (the deployment is gone: a new one of the same id
        must not show its replicas' lines)."""
        for path in (self.path, self.rotated):
            path.unlink(missing_ok=True)

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines, oldest first, across the rotated file and the current one."""
        out = _tail(self.path, lines)
        if len(out) < lines:
            out = _tail(self.rotated, lines - len(out)) + out
        return out


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file ([] when it is missing), read from the end."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as f:
            data, pos = b"", f.seek(0, os.SEEK_END)
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(pos, 64 << 10)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    text = data.decode(errors="replace").splitlines()
    return text[-lines:]
