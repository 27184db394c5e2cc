"""The committed sidebar build (jupyter_deploy/labextension) is the build of labextension/ as it
stands: `pip install .` ships it without Node.js. (.ci/run rebuilds it from the sources and
compares byte for byte; this checks what can be checked without Node.js.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import jupyter_deploy

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "jupyter_deploy" / "labextension"
SOURCES = ROOT / "labextension"


def test_the_committed_build_is_of_these_sources_and_this_version():
    built = json.loads((BUILT / "package.json").read_text())
    source = json.loads((SOURCES / "package.json").read_text())
    build = built["jupyterlab"].pop("_build")
    # The builder copies package.json and adds only where its entry point is.
    assert built == source, "the committed build is of another labextension/package.json: run jlpm build:prod"
    assert source["version"] == jupyter_deploy.__version__
    entries = sorted(p.name for p in (BUILT / "static").glob("remoteEntry.*.js"))
    assert entries == [Path(build["load"]).name], entries  # one entry point, the one JupyterLab loads
    assert (BUILT / "static" / "style.js").is_file()
    assert not (BUILT / "build_log.json").exists(), "a development build: commit jlpm build:prod's output"


def test_every_file_of_the_build_is_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--", "jupyter_deploy/labextension"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    on_disk = sorted(p.relative_to(ROOT).as_posix() for p in BUILT.rglob("*") if p.is_file())
    assert sorted(tracked) == on_disk
