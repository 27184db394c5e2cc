"""The daemon's home folder: writable by the daemon, private to its owner.

The home holds the route-token signing keys (``state.db``), the daemon's secret,
token files and users' secret values. A home made by hand or by an older version
(``mkdir``: 0755, ``state.db`` 0644 under the usual umask) would leave them readable
by other OS users, so every daemon start removes the group and other permissions
from the home, those files and the secrets folder (modes 0700 and 0600 at most; a
permission the owner took away is not given back).

Example::

    prepare(home)         # before anything is written there
    ...                   # open the state, write the files
    make_private(home)    # after: the files the start created are covered too
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import DeployError

#: Files directly under the home that only its owner may read.
PRIVATE_FILES = ("state.db", "state.db-wal", "state.db-shm", "logs.db", "logs.db-wal", "logs.db-shm",
                 "secret.key", "daemon.json", "daemon.lock")
#: Folders under the home whose whole tree only its owner may read.
PRIVATE_TREES = ("secrets",)


def prepare(home: Path) -> None:
    """Create ``home`` (0700) if needed, make it private, and check the daemon can write there.

    Raises DeployError, one line saying what to do, when it cannot.
    """
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        _restrict(home, 0o700)
        probe = home / f".write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DeployError(f"the home folder {home} is not writable ({e.strerror or e}): make it "
                          f"writable by you (chmod u+rwx {home}), or use another one "
                          f"(JUPYTER_DEPLOY_HOME or --home)") from None


def make_private(home: Path) -> None:
    """Remove group and other permissions from the home's private files and trees."""
    _restrict(home, 0o700)
    for name in PRIVATE_FILES:
        _restrict(home / name, 0o600)
    for name in (*PRIVATE_TREES, *(p.name for p in home.glob("*.token"))):
        root = home / name
        _restrict(root, 0o700 if root.is_dir() else 0o600)
        for folder, dirs, files in os.walk(root):
            for d in dirs:
                _restrict(Path(folder, d), 0o700)
            for f in files:
                _restrict(Path(folder, f), 0o600)


def _restrict(path: Path, allowed: int) -> None:
    """Clear the permission bits of ``path`` outside ``allowed``; a missing path is skipped."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISLNK(st.st_mode) and mode & ~allowed:  # (a link's target is not ours to change)
        os.chmod(path, mode & allowed)
