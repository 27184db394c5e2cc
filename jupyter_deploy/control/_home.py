"""The daemon's home folder: writable by the daemon, private to its owner.

The home holds the daemon's secret (from which route-token keys are derived),
``state.db``, token files and users' secret values. A home made by hand or by an
older version (``mkdir``: 0755, ``state.db`` 0644 under the usual umask) would leave
them readable by other OS users, so every daemon start removes the group and other
permissions from the home, those files and the secrets folder (modes 0700 and 0600
at most; a permission the owner took away is not given back).

Where runners run as OS users of their own (``sandboxed()``: the daemon is root,
see ``_sandbox``), they must reach their sandbox and telemetry folders inside the
home, so the home is 0711 instead: others may pass through it to a path they
know, never list it. Everything else in it is kept private: every entry directly
under the home but ``sandboxes`` and ``telemetry`` is 0700 (folders) or 0600
(files), and the daemon runs with umask 077, so what it creates later is private
from the start.

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
#: Where runners are sandboxed: the folders under the home they pass through (``_sandbox``).
RUNNER_REACHABLE = ("sandboxes", "telemetry")
#: Folders other processes (a kernel) may write into later: made, private, before they do.
MADE_PRIVATE = ("notebook_models",)
#: Whose runners get OS users of their own where the daemon is root: ``users`` (the default:
#: every user's but the admin's), ``all`` (the admin's too), ``off`` (nobody's).
RUNNER_UIDS_ENV = "JUPYTER_DEPLOY_RUNNER_UIDS"


def runner_uids() -> str:
    """Whose runners run as OS users of their own: ``users`` (everyone's but the admin's, who
    started the daemon and reads all it holds anyway), ``all`` or ``off``, from
    ``JUPYTER_DEPLOY_RUNNER_UIDS``; always ``off`` unless the daemon runs as root (the only user
    that may start processes as another)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return "off"
    value = os.environ.get(RUNNER_UIDS_ENV, "").strip().lower()
    if value in ("off", "0", "false", "no", "none"):
        return "off"
    return "all" if value == "all" else "users"


def sandboxed() -> bool:
    """Whether some runners run as OS users of their own (``runner_uids()`` is not ``off``)."""
    return runner_uids() != "off"


def prepare(home: Path) -> None:
    """Create ``home`` (0700) if needed, make it private, and check the daemon can write there.

    Where runners are sandboxed, also sets the daemon's umask to 077. Raises DeployError,
    one line saying what to do, when the home is not writable.
    """
    if sandboxed():
        os.umask(0o077)  # the home is passable (0711): whatever the daemon creates there stays private
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        _restrict(home, 0o711 if sandboxed() else 0o700)
        probe = home / f".write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DeployError(f"the home folder {home} is not writable ({e.strerror or e}): make it "
                          f"writable by you (chmod u+rwx {home}), or use another one "
                          f"(JUPYTER_DEPLOY_HOME or --home)") from None


def make_private(home: Path) -> None:
    """Remove group and other permissions from the home's private files and trees.

    Where runners are sandboxed, the home becomes 0711 and every other entry directly
    under it but ``RUNNER_REACHABLE`` ones 0700 or 0600.
    """
    if sandboxed():
        os.chmod(home, 0o711)
        for name in MADE_PRIVATE:
            (home / name).mkdir(mode=0o700, exist_ok=True)
        for entry in os.scandir(home):
            if entry.name not in RUNNER_REACHABLE:
                _restrict(Path(entry.path), 0o700 if entry.is_dir(follow_symlinks=False) else 0o600)
    else:
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
