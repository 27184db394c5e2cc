"""Tests of jupyter_deploy.checkpoints against fake Hugging Face caches (no network)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from jupyter_deploy.checkpoints import hf_cache_dir, resolve_checkpoint
from jupyter_deploy.config import Checkpoints
from jupyter_deploy.errors import ConfigError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty hub cache pointed to by HF_HUB_CACHE, with no other HF variables set."""
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "hub"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    return path


def add_snapshot(cache: Path, repo_id: str, commit: str, ref: str | None = "main") -> Path:
    """Lay out one snapshot the way huggingface_hub does."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def fake_hub(monkeypatch):
    """A stand-in huggingface_hub whose snapshot_download records its calls."""
    module = types.ModuleType("huggingface_hub")
    module.calls = []

    def snapshot_download(repo_id, revision=None, token=None):
        module.calls.append((repo_id, revision, token))
        return "/downloaded/" + repo_id

    module.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return module


def hf(repo_id="org/model", **kwargs) -> Checkpoints:
    return Checkpoints(type="huggingface", repo_id=repo_id, **kwargs)


def test_none_is_none(tmp_path):
    assert resolve_checkpoint(None, tmp_path) is None


# --------------------------------------------------------------------------- local


def test_local_relative_path_is_under_the_model_folder(tmp_path):
    (tmp_path / "weights").mkdir()
    assert resolve_checkpoint(Checkpoints(type="local", path="weights"), tmp_path) == (
        tmp_path / "weights"
    )


def test_local_absolute_path_is_kept(tmp_path):
    weights = tmp_path / "elsewhere"
    weights.mkdir()
    got = resolve_checkpoint(Checkpoints(type="local", path=str(weights)), tmp_path / "model")
    assert got == weights


def test_local_missing_folder_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_checkpoint(Checkpoints(type="local", path="weights"), tmp_path)
    (line,) = info.value.errors
    assert line.startswith(f"{tmp_path / 'config.yaml'}: checkpoints.path: {tmp_path / 'weights'}")
    assert "does not exist" in line


def test_local_file_is_not_a_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        resolve_checkpoint(Checkpoints(type="local", path="weights.bin"), tmp_path)


# --------------------------------------------------------------------------- cache location


def test_cache_dir_precedence(tmp_path, monkeypatch, cache):
    assert hf_cache_dir() == cache
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hf_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hf_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_hf_home_cache_is_used(tmp_path, monkeypatch, cache):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snapshot = add_snapshot(tmp_path / "hf" / "hub", "org/model", COMMIT)
    assert resolve_checkpoint(hf(), tmp_path) == snapshot


# --------------------------------------------------------------------------- cache hits


def test_cached_main_is_found_without_huggingface_hub(tmp_path, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # importing it now fails
    snapshot = add_snapshot(cache, "org/model", COMMIT)
    assert resolve_checkpoint(hf(), tmp_path) == snapshot


def test_cached_named_revision_follows_its_ref(tmp_path, cache, fake_hub):
    add_snapshot(cache, "org/model", COMMIT)
    tagged = add_snapshot(cache, "org/model", OTHER_COMMIT, ref="v1.0")
    assert resolve_checkpoint(hf(revision="v1.0"), tmp_path) == tagged
    assert fake_hub.calls == []


def test_repo_without_org(tmp_path, cache, fake_hub):
    snapshot = add_snapshot(cache, "gpt2", COMMIT)
    assert resolve_checkpoint(hf("gpt2"), tmp_path) == snapshot
    assert fake_hub.calls == []


def test_revision_that_is_a_commit_names_the_snapshot(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = add_snapshot(cache, "org/model", COMMIT, ref=None)  # no refs/ at all
    assert resolve_checkpoint(hf(revision=COMMIT), tmp_path) == snapshot


# --------------------------------------------------------------------------- cache misses


@pytest.mark.parametrize(
    ("name", "value"), [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "true")]
)
def test_miss_offline_says_where_it_looked_and_what_to_do(
    tmp_path, cache, monkeypatch, fake_hub, name, value
):
    monkeypatch.setenv(name, value)
    add_snapshot(cache, "org/model", COMMIT)  # main is cached, v2 is not
    with pytest.raises(ConfigError) as info:
        resolve_checkpoint(hf(revision="v2"), tmp_path)
    (line,) = info.value.errors
    assert "'org/model' at revision 'v2' is not in the local cache" in line
    assert str(cache / "models--org--model") in line
    assert "offline" in line
    assert "download it once with network access" in line
    assert "type: local" in line
    assert fake_hub.calls == []


def test_miss_commit_revision_offline(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_snapshot(cache, "org/model", COMMIT)
    with pytest.raises(
        ConfigError, match=f"at revision '{OTHER_COMMIT}' is not in the local cache"
    ):
        resolve_checkpoint(hf(revision=OTHER_COMMIT), tmp_path)


def test_miss_without_huggingface_hub(tmp_path, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(
        ConfigError, match="huggingface_hub is not installed; pip install huggingface_hub"
    ):
        resolve_checkpoint(hf(), tmp_path)


def test_miss_online_downloads(tmp_path, cache, fake_hub):
    got = resolve_checkpoint(hf(revision="v1.0", hf_token="tok"), tmp_path)
    assert got == Path("/downloaded/org/model")
    assert fake_hub.calls == [("org/model", "v1.0", "tok")]


def test_offline_false_still_downloads(tmp_path, cache, monkeypatch, fake_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolve_checkpoint(hf(), tmp_path)
    assert fake_hub.calls == [("org/model", None, None)]


def test_download_failure_is_a_config_error(tmp_path, cache, fake_hub):
    def failing(repo_id, revision=None, token=None):
        raise OSError("401 Client Error: Unauthorized\nlong body")

    fake_hub.snapshot_download = failing
    with pytest.raises(ConfigError) as info:
        resolve_checkpoint(hf(), tmp_path)
    (line,) = info.value.errors
    assert line.endswith(
        "checkpoints: could not download Hugging Face repo 'org/model' (revision 'main'): "
        "OSError: 401 Client Error: Unauthorized"
    )
    assert isinstance(info.value.__cause__, OSError)
