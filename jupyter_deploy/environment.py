"""Which Python interpreter runs a model, given its folder's ``requirements.txt``.

A model folder's ``requirements.txt`` that the current environment already
satisfies runs in the current interpreter: the kernel's torch/CUDA stack is
reused and nothing is installed. Otherwise the model gets a virtual
environment of its own, cached at ``home()/envs/<hash>/`` where ``<hash>`` is
:func:`requirements_hash` (the requirements text plus the identity of the
current environment), so a second deploy of the same requirements from the
same environment reuses it. A runner the control plane starts is told another
folder in ``$JUPYTER_DEPLOY_ENVS`` (its owner's sandbox, where runners run as
an OS user of their own).

Such an environment is *layered* over the current one: it is created with
``python -m venv --without-pip`` and gets a ``.pth`` file that appends the
current environment's site-packages folders to ``sys.path`` after its own.
Its own packages take precedence, and everything else (torch, pip,
jupyter_deploy, editable installs) comes from the current environment, so pip
installs only what is missing or needs another version.
``--system-site-packages`` would not do: from inside a venv or conda env it
exposes the base interpreter's packages, not the env the kernel runs in.

Building is guarded by an exclusive ``fcntl.flock`` on ``home()/envs/<hash>.lock``
and the environment is built directly at its final path; a ``.ready`` file,
written last, says it is complete. A folder without ``.ready`` is what an
interrupted build left behind: it is treated as absent, and the next builder
removes it while holding the lock. Building in place (rather than in a temporary
folder renamed at the end) keeps the paths pip writes into console-script
shebangs valid.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion

from jupyter_deploy._wire import ENVS_ENV
from jupyter_deploy.errors import EnvironmentSetupError
from jupyter_deploy.paths import home

_READY = ".ready"
_LAST_USED = ".last_used"
# Named to sort after the .pth files pip may install into the venv, so that their
# paths also come before the current environment's.
_LAYER_PTH = "zz_jupyter_deploy_layer.pth"
_PIP_TAIL_LINES = 15
# pip's own rule: "#" starts a comment at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")
_INCLUDE = re.compile(r"^(-r|--requirement)(\s+|=)(?P<path>.+)$")
_EDITABLE = re.compile(r"^(-e|--editable)(\s|=|$)")


def venv_python(env_dir: Path) -> Path:
    """The interpreter of the virtual environment at ``env_dir``.

    >>> venv_python(Path("/envs/3f2a"))
    PosixPath('/envs/3f2a/bin/python')
    """
    return Path(env_dir) / "bin" / "python"


def requirements_satisfied(req_file: Path) -> bool:
    """Whether the current environment already satisfies ``req_file``.

    Every requirement whose marker applies must be installed at a version its
    specifier allows (pre-releases count), extras' dependencies included. Option
    lines (``--index-url``, ``--find-links``, ...) are ignored and ``-r`` includes
    are followed. Direct references (``pkg @ url``, ``-e``, paths, URLs) count as
    unsatisfied, since what is installed cannot be compared with them. A missing
    or empty file is satisfied.

    >>> requirements_satisfied(Path("model/requirements.txt"))  # "packaging>=20"
    True
    """
    return _satisfied(Path(req_file), set())


def requirements_hash(req_file: Path) -> str:
    """A 16-hex-digit key for the environment ``req_file`` needs, from this interpreter.

    It covers the requirements as pip reads them (comments, blank lines and
    spacing left out, ``-r`` includes expanded) and the current environment's
    identity (prefix, interpreter, version): two kernels in different
    environments never share a cached environment.

    >>> requirements_hash(Path("model/requirements.txt"))
    '9c1e5a0b7d3f2e41'
    """
    identity = f"{sys.prefix}\n{Path(sys.executable).resolve()}\n{sys.version}"
    text = "\n".join(_expanded_lines(Path(req_file), set()))
    return hashlib.sha256(f"{identity}\0{text}".encode()).hexdigest()[:16]


def ensure_environment(req_file: Path, *, log: Callable[[str], object] = print) -> str:
    """The path of the Python interpreter to run the model whose requirements are ``req_file``.

    ``sys.executable`` when the current environment satisfies them; otherwise the
    interpreter of a cached environment layered over the current one, built
    first if needed (pip's output goes to ``log``, line by line). Raises
    :class:`EnvironmentSetupError` when the requirements cannot be installed.

    >>> ensure_environment(Path("model/requirements.txt"))
    '/home/me/.jupyter_deploy/envs/9c1e5a0b7d3f2e41/bin/python'
    """
    req_file = Path(req_file)
    if requirements_satisfied(req_file):
        return sys.executable
    env_dir = _envs_dir() / requirements_hash(req_file)
    if not (env_dir / _READY).exists():
        with _env_lock(env_dir, wait=True, log=log):
            # Another process may have finished it while we waited for the lock.
            if not (env_dir / _READY).exists():
                _build(env_dir, req_file, log)
    (env_dir / _LAST_USED).touch()  # what gc keeps: environments used lately
    return str(venv_python(env_dir))


def recently_used(max_idle: float) -> set[str]:
    """Hashes of the cached environments used within the last ``max_idle`` seconds."""
    root = _envs_dir()
    if not root.is_dir():
        return set()
    cutoff = time.time() - max_idle
    out = set()
    for entry in root.iterdir():
        stamp = entry / _LAST_USED
        if not stamp.exists():
            stamp = entry / _READY
        try:
            if stamp.stat().st_mtime >= cutoff:
                out.add(entry.name)
        except OSError:
            continue
    return out


def gc_environments(keep: set[str]) -> list[Path]:
    """Remove the cached environments whose hash is not in ``keep``; return their paths.

    An environment being built right now is left alone. Lock files stay: removing
    one while another process waits on it would let two builders hold different
    locks for the same environment.

    >>> gc_environments({requirements_hash(Path("model/requirements.txt"))})
    [PosixPath('/home/me/.jupyter_deploy/envs/0b5d9e7a13c4f822')]
    """
    root = _envs_dir()
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name in keep:
            continue
        with _env_lock(entry, wait=False) as locked:
            if locked:
                shutil.rmtree(entry)
                removed.append(entry)
    return removed


def _envs_dir() -> Path:
    # A runner the control plane started is told where (its owner's sandbox, or the home's envs/).
    return Path(os.environ.get(ENVS_ENV) or home() / "envs")


def _logical_lines(req_file: Path) -> list[str]:
    """The file's lines as pip reads them: continuations joined, comments and blanks dropped."""
    text = req_file.read_text() if req_file.is_file() else ""
    lines = []
    for line in text.replace("\\\n", "").splitlines():
        line = _COMMENT.sub("", line).strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def _expanded_lines(req_file: Path, seen: set[Path]) -> Iterator[str]:
    """The logical lines of ``req_file`` with ``-r`` includes replaced by theirs."""
    seen.add(req_file.resolve())
    for line in _logical_lines(req_file):
        include = _INCLUDE.match(line)
        if include:
            path = req_file.parent / include["path"]
            if path.resolve() not in seen:
                yield from _expanded_lines(path, seen)
        else:
            yield line


def _satisfied(req_file: Path, seen: set[Path]) -> bool:
    seen.add(req_file.resolve())
    for line in _logical_lines(req_file):
        if _EDITABLE.match(line):
            return False
        include = _INCLUDE.match(line)
        if include:
            path = req_file.parent / include["path"]
            if not path.is_file():
                return False  # pip will say what is wrong with it
            if path.resolve() not in seen and not _satisfied(path, seen):
                return False
            continue
        if line.startswith("-"):
            continue
        # Per-requirement options (e.g. "--hash=...") follow the requirement itself.
        spec = re.split(r"\s-", line, maxsplit=1)[0]
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            return False  # a path, URL or wheel file name
        if req.url or not _installed(req, set()):
            return False
    return True


def _installed(req: Requirement, seen: set[str]) -> bool:
    """Whether ``req`` (with its extras' dependencies) is installed, if its marker applies."""
    if req.marker and not req.marker.evaluate():
        return True
    try:
        version = importlib.metadata.version(req.name)
        if not req.specifier.contains(version, prereleases=True):
            return False
    except (importlib.metadata.PackageNotFoundError, InvalidVersion):
        return False
    for extra in req.extras:
        key = f"{req.name}[{extra}]".lower()
        if key in seen:
            continue
        seen.add(key)
        for dep_text in importlib.metadata.requires(req.name) or []:
            dep = Requirement(dep_text)
            if dep.marker and not dep.marker.evaluate({"extra": extra}):
                continue
            dep.marker = None
            if not _installed(dep, seen):
                return False
    return True


@contextlib.contextmanager
def _env_lock(
    env_dir: Path, *, wait: bool, log: Callable[[str], object] = print
) -> Iterator[bool]:
    """Hold the environment's build lock; yields False if ``wait`` is off and it is taken."""
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(env_dir.parent / f"{env_dir.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            locked = False
        if not locked and wait:
            log(f"Waiting for another process that is building {env_dir} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        yield locked
    finally:
        os.close(fd)  # releases the lock


def _build(env_dir: Path, req_file: Path, log: Callable[[str], object]) -> None:
    """Create the layered environment at ``env_dir`` and install ``req_file`` into it."""
    if env_dir.exists():
        shutil.rmtree(env_dir)  # left by an interrupted build
    log(f"Creating an environment for {req_file} in {env_dir} ...")
    started = time.monotonic()
    try:
        created = subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise EnvironmentSetupError(
                f"Could not create a virtual environment for {req_file} in {env_dir}:\n"
                f"{created.stderr.strip()}"
            )
        _layer_over_current(env_dir)
        _pip_install(env_dir, req_file, log)
    except BaseException:
        # Interrupted or failed: leave nothing behind that a later build must clean up.
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    (env_dir / _READY).touch()
    log(f"Environment ready in {time.monotonic() - started:.1f} s: {env_dir}")


def _layer_over_current(env_dir: Path) -> None:
    """Make the current environment's site-packages visible in ``env_dir``, after its own."""
    active = set(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        active.add(site.getusersitepackages())
    # In sys.path order, so the layered environment resolves names as this one does.
    dirs = list(dict.fromkeys(p for p in sys.path if p in active and os.path.isdir(p)))
    where = {"base": str(env_dir), "platbase": str(env_dir)}
    purelib = Path(sysconfig.get_path("purelib", scheme="venv", vars=where))
    (purelib / _LAYER_PTH).write_text(f"import site; list(map(site.addsitedir, {dirs!r}))\n")


def _pip_install(env_dir: Path, req_file: Path, log: Callable[[str], object]) -> None:
    command = [
        str(venv_python(env_dir)), "-m", "pip", "install",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "-r", str(req_file.resolve()),
    ]  # fmt: skip
    tail: collections.deque[str] = collections.deque(maxlen=_PIP_TAIL_LINES)
    with subprocess.Popen(
        command,
        # Bare relative paths in requirements.txt mean the model folder, as they do
        # when a user runs pip there.
        cwd=req_file.resolve().parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
    if pip.returncode != 0:
        output = "\n".join(tail)
        raise EnvironmentSetupError(
            f"Could not install the requirements in {req_file} (pip exited with status "
            f"{pip.returncode}). The end of pip's output:\n{output}\n"
            f"Fix {req_file.name}, or install the packages into this environment."
        )


def missing_requirements(req_file: Path) -> list[str]:
    """The lines of ``req_file`` (its ``-r`` includes expanded) the current environment does not
    satisfy, as written; option lines are left out. A Ray node answers this for the ``ray``
    backend, which installs only these through a ``runtime_env``.

    >>> missing_requirements(Path("model/requirements.txt"))  # "packaging>=20\\nnot-installed==1"
    ['not-installed==1']
    """
    out = []
    for line in _expanded_lines(Path(req_file), set()):
        if _EDITABLE.match(line):
            out.append(line)
            continue
        if line.startswith("-"):
            continue
        spec = re.split(r"\s-", line, maxsplit=1)[0]
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            out.append(line)  # a path, URL or wheel file name
            continue
        if req.url or not _installed(req, set()):
            out.append(spec)
    return out
