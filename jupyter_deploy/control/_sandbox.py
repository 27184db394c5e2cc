"""Runner sandboxes: the OS user a replica's runner runs as, and the folders it may reach.

Where the daemon runs as root (``_home.runner_uids()``), every deployment owner but
the admin (who started the daemon and reads all it holds anyway, and whose notebook
files its models may read: local checkpoints, data) gets an OS user of its own (the
admin too with ``JUPYTER_DEPLOY_RUNNER_UIDS=all``): uid ``FIRST_UID + n`` (a range reserved for this; a uid the
host already knows is skipped), given once, in the ``users`` table, from a counter
that never goes back, so a uid is never handed to a second user. No ``/etc/passwd``
entry is needed. Its runners run as that uid, with the group of the same number and
the runners' group ``RUNNERS_GID`` (which only ever grants passing through
folders), and umask 077. Each owner has a sandbox, ``home/sandboxes/<uid>/``::

    home/sandboxes/               root, 0711
    home/sandboxes/<uid>/         root:<uid>, 0750   its runners pass through, no one else
        versions/                 root:<uid>, 0750   root copies versions here
        versions/<version id>/    <uid>, 0700        the model's folder (files 0600, or 0700 if executable)
        envs/                     <uid>, 0700        its model environments (``environment``)
        run/                      <uid>, 0700        its runners' port files
        home/                     <uid>, 0700        its runners' $HOME and working folder

and each replica's telemetry folder ``home/telemetry/<user>/<deployment>/<replica>/``
is the uid's (0700; ``home/telemetry/<user>`` is root:<uid> 0710, so only the owner's
runners pass through it). The shared ``home/versions`` stays root's: a runner sees
only its owner's copies. Root never follows a link in a folder a uid owns: copies
are made in root's folders and handed over once complete (``lchown``); files runners
write are read with ``O_NOFOLLOW``.

Runners must also reach the Python installation and the home: a folder above them
that others may not pass through (``/root`` 0700, pytest's 0700 temporary folders)
gets a POSIX ACL entry "group ``RUNNERS_GID``: --x" (pass through, not list or read);
on a filesystem without ACLs it gets o+x. Each change is logged; none is undone. This is
checked before every runner starts: a later ``chmod`` of such a folder (which resets an ACL's
mask) is repaired then, though runners already running lose their way through it until then.

Without root (or for the admin, or with ``JUPYTER_DEPLOY_RUNNER_UIDS=off``),
``Sandboxes.for_user`` returns None: runners run as the daemon's user. A sandboxed
runner reads nothing outside its sandbox that the host does not let every user read:
a local checkpoint named by an absolute path, or a Hugging Face cache, must be
readable by others (or inside the model's folder, which is copied).

Example::

    sandboxes = Sandboxes(store, home)
    sandbox = sandboxes.for_user("alice")       # None where the daemon is not root
    model_path = sandbox.version("v1", home / "versions" / "v1")
    sandbox.hand_over(replica_dir(home, "alice", "echo", rid))
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import shutil
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._auth import is_admin
from ._backends.base import RunAs
from ._errors import FailedPrecondition
from ._home import runner_uids
from ._store import Store

log = logging.getLogger("jupyter_deploy.scheduler")

#: The runners' group: folders on the way to the Python installation and the home let it pass.
RUNNERS_GID = 0x3A000
#: The first uid given to a deployment owner; the range has ``UID_COUNT`` of them.
FIRST_UID = RUNNERS_GID + 1
UID_COUNT = 0xFFFF
_NEXT_UID_KEY = "next_runner_uid"  # in the store's meta table

_ACL_XATTR = "system.posix_acl_access"
_USER_OBJ, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_ACL_VERSION = 2
_EXECUTE = 1


@dataclass(frozen=True)
class Sandbox:
    """One deployment owner's OS user and folders (see the module's docstring)."""

    user_id: str
    uid: int
    root: Path

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def run_as(self) -> RunAs:
        """How a backend starts this owner's runners."""
        return RunAs(uid=self.uid, gid=self.uid, groups=(RUNNERS_GID,), home=self.root / "home",
                     run_dir=self.root / "run", name=f"jd-{self.user_id}")

    def version(self, version_id: str, source: Path) -> Path:
        """The owner's copy of a version's folder ``source``, made (atomically) if missing."""
        dest = self.root / "versions" / version_id
        if dest.is_dir():
            return dest
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{version_id}."))
        try:
            shutil.copytree(source, tmp, symlinks=True, dirs_exist_ok=True)
            for folder, dirs, files in os.walk(tmp):
                for name in (*dirs, *files):
                    self._own(Path(folder, name))
            self._own(tmp)
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # else another thread made it first: keep theirs
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def hand_over(self, replica_dir: Path) -> None:
        """Make a replica's telemetry folder the owner's, and the way to it passable for its runners.

        ``replica_dir`` is ``home/telemetry/<user>/<deployment>/<replica>``.
        """
        deployment_dir = replica_dir.parent
        user_dir = deployment_dir.parent
        _folder(user_dir.parent, 0, 0, 0o711)
        _folder(user_dir, 0, self.uid, 0o710)
        _folder(deployment_dir, 0, 0, 0o711)
        _folder(replica_dir, self.uid, self.uid, 0o700)

    def _own(self, path: Path) -> None:
        st = os.lstat(path)
        os.lchown(path, self.uid, self.uid)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, 0o700)
        elif stat.S_ISREG(st.st_mode):
            os.chmod(path, 0o700 if st.st_mode & 0o111 else 0o600)


class Sandboxes:
    """The sandboxes of every deployment owner under ``home/sandboxes`` (where ``enabled``).

    Args:
        store: the state (``users.runner_uid``, and the meta table's uid counter).
        home: the control plane's home.
        mode: whose runners get OS users of their own (``_home.runner_uids()``, its default):
            ``users``, ``all`` or ``off``.
    """

    def __init__(self, store: Store, home: Path, mode: str | None = None):
        self.store, self.home = store, Path(home)
        self.root = self.home / "sandboxes"
        self.mode = runner_uids() if mode is None else mode
        self._paths: list[Path] | None = None  # what runners must reach (made on first use)

    def for_user(self, user_id: str) -> Sandbox | None:
        """The sandbox of ``user_id``'s runners, its folders made; None where they are not sandboxed."""
        if self.mode == "off" or (self.mode == "users" and is_admin(user_id)):
            return None
        if self._paths is None:
            self._paths = runner_paths(self.home)
        # At every start, not once: a chmod of a folder on the way (pytest tidying its temporary
        # folders, say) resets the ACL's mask. Stat calls only, while nothing changed.
        reach(self._paths, RUNNERS_GID)
        uid = self._uid(user_id)
        root = self.root / str(uid)
        _folder(self.root, 0, 0, 0o711)
        _folder(root, 0, uid, 0o750)
        _folder(root / "versions", 0, uid, 0o750)
        for name in ("envs", "run", "home"):
            _folder(root / name, uid, uid, 0o700)
        return Sandbox(user_id, uid, root)

    def prune(self, version_ids: set[str]) -> None:
        """Remove the copies of versions not in ``version_ids`` (deleted), and half-made copies."""
        for versions in self.root.glob("*/versions"):
            for entry in versions.iterdir():
                if entry.name not in version_ids:
                    shutil.rmtree(entry, ignore_errors=True)  # (rmtree follows no links)

    def _uid(self, user_id: str) -> int:
        row = self.store.one("SELECT runner_uid FROM users WHERE id = ?", (user_id,))
        if row is not None and row["runner_uid"] is not None:
            return int(row["runner_uid"])
        with self.store.tx() as db:
            row = db.execute("SELECT runner_uid FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                raise FailedPrecondition(f"user {user_id} does not exist")
            if row["runner_uid"] is not None:
                return int(row["runner_uid"])
            counter = db.execute("SELECT value FROM meta WHERE key = ?", (_NEXT_UID_KEY,)).fetchone()
            uid = int(counter["value"]) if counter else FIRST_UID
            while _host_knows(uid):
                uid += 1
            if uid >= FIRST_UID + UID_COUNT:
                raise FailedPrecondition(f"no runner uid left in {FIRST_UID}..{FIRST_UID + UID_COUNT - 1}")
            db.execute("UPDATE users SET runner_uid = ? WHERE id = ?", (uid, user_id))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_NEXT_UID_KEY, str(uid + 1)))
        log.info("user %s: runners run as uid %d", user_id, uid)
        return uid


def _host_knows(uid: int) -> bool:
    """Whether the host names ``uid`` as a user or a group (then it is not ours to give)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _folder(path: Path, uid: int, gid: int, mode: int) -> None:
    """``path`` a folder (made if missing) owned by ``uid:gid`` with ``mode``; never through a link."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} is not a folder")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


# ---------------------------------------------------------------- passing through to Python and the home


def runner_paths(home: Path) -> list[Path]:
    """What a runner must reach: the home, and the daemon's Python (interpreter, prefixes, sys.path)."""
    cwd = os.getcwd()
    paths = [Path(home), Path(sys.executable).parent, Path(os.path.realpath(sys.executable)).parent,
             Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    # Not the working folder (python -m puts it first): runners import nothing from there.
    paths += [Path(p) for p in sys.path if p and p != cwd and os.path.isdir(p)]
    return list(dict.fromkeys(p.resolve() for p in paths))


def reach(paths: list[Path], gid: int) -> list[Path]:
    """Let group ``gid`` pass through every folder above ``paths``; the folders changed."""
    changed = []
    for path in paths:
        for folder in reversed(path.parents):
            if folder not in changed and not _passable(folder, gid):
                how = _let_pass(folder, gid)
                changed.append(folder)
                log.warning("runners (group %d) may now pass through %s (%s), to reach %s", gid, folder, how, path)
    return changed


def _passable(folder: Path, gid: int) -> bool:
    mode = os.stat(folder).st_mode
    if mode & 0o001:
        return True
    entries = _read_acl(folder)
    if not entries:
        return False
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), 7)
    return any(tag == _GROUP and who == gid and perm & mask & _EXECUTE for tag, perm, who in entries)


def _let_pass(folder: Path, gid: int) -> str:
    """Add "group gid: --x" to the folder's ACL (o+x where it has none); says which."""
    entries = _read_acl(folder)
    if not entries:
        mode = os.stat(folder).st_mode
        entries = [(_USER_OBJ, (mode >> 6) & 7, _NO_ID), (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
                   (_OTHER, mode & 7, _NO_ID)]
    own = next((perm for tag, perm, who in entries if tag == _GROUP and who == gid), 0)
    group_class = [perm for tag, perm, _ in entries if tag in (_GROUP_OBJ, _GROUP)]
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), None)
    entries = [e for e in entries if e[0] != _MASK and not (e[0] == _GROUP and e[2] == gid)]
    entries += [(_GROUP, own | _EXECUTE, gid),
                (_MASK, (mask if mask is not None else _union(group_class)) | _EXECUTE, _NO_ID)]
    data = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", *e) for e in sorted(entries, key=lambda e: (e[0], e[2])))
    try:
        os.setxattr(folder, _ACL_XATTR, data)
        return "ACL"
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) | 0o001)
    return "o+x: no ACLs on this filesystem"


def _union(perms: list[int]) -> int:
    out = 0
    for p in perms:
        out |= p
    return out


def _read_acl(folder: Path) -> list[tuple[int, int, int]]:
    """The folder's ACL entries ``(tag, perm, id)``; [] when it has none (or the system has no ACLs)."""
    try:
        data = os.getxattr(folder, _ACL_XATTR)
    except OSError:
        return []
    if len(data) < 4 or (len(data) - 4) % 8 or struct.unpack_from("<I", data)[0] != _ACL_VERSION:
        return []
    return [struct.unpack_from("<HHI", data, offset) for offset in range(4, len(data), 8)]
