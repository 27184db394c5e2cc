"""Tests of jupyter_deploy.environment: fast path, layered cached environments, gc.

No package index is used: the packages to install are wheels built here by hand and
installed with ``--no-index --find-links``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jupyter_deploy
from jupyter_deploy import environment
from jupyter_deploy.environment import (
    ensure_environment,
    gc_environments,
    requirements_hash,
    requirements_satisfied,
    venv_python,
)
from jupyter_deploy.errors import EnvironmentSetupError

REPO_ROOT = Path(jupyter_deploy.__path__[0]).parent


def build_wheel(folder: Path, name: str, version: str, module_source: str) -> Path:
    """A pure-Python wheel holding ``<name>/__init__.py``, written into ``folder``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test_environment\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def run_python(python: str | Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # jupyter_deploy may not be installed in the base environment while testing from
    # a checkout; PYTHONPATH makes it importable from both interpreters alike.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "tinypkg", "0.1", "VALUE = 42\n")
    # A package the base environment has too (pytest needs it), at a version it lacks.
    build_wheel(folder, "iniconfig", "99.0", "VALUE = 99\n")
    return folder


@pytest.fixture(scope="module")
def deploy_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_DEPLOY_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wheels) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "requirements.txt").write_text(
        f"--no-index\n--find-links {wheels}\ntinypkg==0.1\niniconfig==99.0\n"
    )
    return folder


@pytest.fixture(scope="module")
def built_python(deploy_home, model_dir) -> str:
    """The interpreter of the environment built once for ``model_dir``."""
    return ensure_environment(model_dir / "requirements.txt", log=lambda line: None)


def write(tmp_path: Path, text: str, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("# only a comment\n\n   \n", True),
        ("pyyaml>=1\npackaging  # needed for versions\n", True),
        ("PyYAML>=1\n", True),  # names are compared normalised
        ("packaging>=0.1 --hash=sha256:0000\n", True),
        ("--index-url https://example.invalid/simple\n--find-links ./wheels\n", True),
        ("--index-url https://example.invalid/simple\npyyaml\n", True),
        ("pyyaml<1\n", False),
        ("nosuchpkg-xyz\n", False),
        ("--index-url https://example.invalid/simple\nnosuchpkg-xyz\n", False),
        ('nosuchpkg-xyz; python_version < "3"\n', True),  # marker does not apply
        ('pyyaml<1; sys_platform == "nosuchplatform"\n', True),
        ('nosuchpkg-xyz; python_version >= "3"\n', False),
        ("pyyaml>=1 \\\n  ,<1\n", False),  # a continuation line
        ("pytest\n", True),
        ("pytest[nosuchextra]\n", True),  # an unknown extra adds no dependency
        ("pytest[dev]\n", False),  # its "dev" extra needs packages not installed here
        ("pyyaml @ file:///nowhere/pyyaml.whl\n", False),
        ("-e ./src\n", False),
        ("./some/local/package\n", False),
        ("https://example.invalid/pkg.whl\n", False),
    ],
)
def test_requirements_satisfied(tmp_path, text, expected):
    assert requirements_satisfied(write(tmp_path, text)) is expected


def test_missing_file_is_satisfied(tmp_path):
    assert requirements_satisfied(tmp_path / "requirements.txt")


def test_includes_are_followed(tmp_path):
    write(tmp_path, "pyyaml>=1\n", "base.txt")
    assert requirements_satisfied(write(tmp_path, "-r base.txt\npackaging\n"))
    write(tmp_path, "nosuchpkg-xyz\n", "base.txt")
    assert not requirements_satisfied(write(tmp_path, "--requirement=base.txt\n"))
    assert not requirements_satisfied(write(tmp_path, "-r missing.txt\n"))


def test_hash_ignores_formatting_but_not_content(tmp_path):
    a = requirements_hash(write(tmp_path, "# deps\n\ntinypkg==0.1   \nfoo>=1  # why\n", "a.txt"))
    b = requirements_hash(write(tmp_path, "tinypkg==0.1\nfoo>=1\n", "b.txt"))
    c = requirements_hash(write(tmp_path, "tinypkg==0.2\nfoo>=1\n", "c.txt"))
    assert a == b != c
    assert len(a) == 16 and int(a, 16) >= 0


def test_hash_depends_on_the_interpreter(tmp_path, monkeypatch):
    req = write(tmp_path, "tinypkg==0.1\n")
    before = requirements_hash(req)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "another-env"))
    assert requirements_hash(req) != before


def test_satisfied_requirements_use_the_current_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path / "home"))
    req = write(tmp_path, "pyyaml>=1\npackaging\n")
    assert ensure_environment(req, log=lambda line: None) == sys.executable
    assert not (tmp_path / "home" / "envs").exists()


def test_unsatisfied_requirements_get_a_layered_environment(
    built_python, deploy_home, model_dir, tmp_path
):
    env_dir = deploy_home / "envs" / requirements_hash(model_dir / "requirements.txt")
    assert built_python == str(venv_python(env_dir))
    assert (env_dir / ".ready").is_file()

    code = (
        "import tinypkg, iniconfig, yaml, jupyter_deploy, pip; "
        "print(tinypkg.VALUE, iniconfig.VALUE, yaml.__name__)"
    )
    result = run_python(built_python, code, tmp_path)
    assert result.returncode == 0, result.stderr
    # The environment's own iniconfig 99 shadows the base environment's.
    assert result.stdout.split() == ["42", "99", "yaml"]

    # The base environment is untouched.
    base = run_python(sys.executable, "import tinypkg", tmp_path)
    assert base.returncode != 0
    code = "import iniconfig; print(hasattr(iniconfig, 'VALUE'))"
    base = run_python(sys.executable, code, tmp_path)
    assert base.stdout.strip() == "False"
    assert not requirements_satisfied(model_dir / "requirements.txt")


def test_cached_environment_is_reused_without_running_anything(
    built_python, model_dir, monkeypatch
):
    ready = Path(built_python).parent.parent / ".ready"
    mtime = ready.stat().st_mtime_ns

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess: {args}")

    monkeypatch.setattr(environment.subprocess, "run", no_subprocess)
    monkeypatch.setattr(environment.subprocess, "Popen", no_subprocess)
    assert ensure_environment(model_dir / "requirements.txt") == built_python
    assert ready.stat().st_mtime_ns == mtime


def test_an_interrupted_build_is_rebuilt(deploy_home, wheels, tmp_path):
    req = write(tmp_path, f"--no-index\n--find-links {wheels}\ntinypkg==0.1\n# rebuilt\n")
    env_dir = deploy_home / "envs" / requirements_hash(req)
    # What a build killed half-way leaves: a folder without .ready.
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "half-written").write_text("")
    python = ensure_environment(req, log=lambda line: None)
    assert not (env_dir / "half-written").exists()
    assert run_python(python, "import tinypkg", tmp_path).returncode == 0


def test_failed_install_raises_and_leaves_no_environment(deploy_home, wheels, tmp_path):
    req = write(tmp_path, f"--no-index\n--find-links {wheels}\nnosuchpkg-xyz==9\n")
    lines: list[str] = []
    with pytest.raises(EnvironmentSetupError) as caught:
        ensure_environment(req, log=lines.append)
    message = str(caught.value)
    assert str(req) in message
    assert "nosuchpkg-xyz" in message
    assert len(message.splitlines()) < 25
    assert any("nosuchpkg-xyz" in line for line in lines)  # pip's output was logged
    assert not (deploy_home / "envs" / requirements_hash(req)).exists()


def test_gc_removes_environments_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path))
    assert gc_environments(set()) == []
    envs = tmp_path / "envs"
    for name in ("aaaa", "bbbb", "cccc"):
        (envs / name / "bin").mkdir(parents=True)
        (envs / name / ".ready").touch()
    removed = gc_environments({"bbbb"})
    assert removed == [envs / "aaaa", envs / "cccc"]
    assert sorted(p.name for p in envs.iterdir() if p.is_dir()) == ["bbbb"]


def test_gc_leaves_an_environment_being_built(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path))
    (tmp_path / "envs" / "aaaa").mkdir(parents=True)
    with environment._env_lock(tmp_path / "envs" / "aaaa", wait=True) as locked:
        assert locked
        assert gc_environments(set()) == []
    assert gc_environments(set()) == [tmp_path / "envs" / "aaaa"]
