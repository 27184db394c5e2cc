"""Turn the ``checkpoints`` section of a config.yaml into a folder of weights.

A Hugging Face checkpoint is taken from the local Hugging Face cache when it is
there, so a model that was tried in the notebook starts without network access;
only a miss downloads (with ``huggingface_hub``, imported only then)::

    from jupyter_deploy.checkpoints import resolve_checkpoint
    from jupyter_deploy.config import load_config

    folder = Path("models/sentiment")
    weights = resolve_checkpoint(load_config(folder).checkpoints, folder)
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from jupyter_deploy.errors import ConfigError

if TYPE_CHECKING:  # the config models (pydantic) load only where a config is read
    from jupyter_deploy.config import Checkpoints

__all__ = ["hf_cache_dir", "resolve_checkpoint"]

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def resolve_checkpoint(ckpt: Checkpoints | None, model_dir: Path) -> Path | None:
    """The folder holding a model's weights, or ``None`` if it declares none.

    ``local`` paths are relative to ``model_dir`` unless absolute. A
    ``huggingface`` repo is looked up in the local cache (see ``hf_cache_dir``)
    and downloaded with ``huggingface_hub.snapshot_download`` only if it is
    missing there and downloading is possible::

        >>> resolve_checkpoint(Checkpoints(type="local", path="weights"), Path("models/m"))
        PosixPath('models/m/weights')

    Raises:
        ConfigError: the local folder does not exist, or the repo is not cached
            and cannot be downloaded (offline, no ``huggingface_hub``, or the
            download failed). The message says what to do.
    """
    if ckpt is None:
        return None
    where = f"{Path(model_dir) / 'config.yaml'}: checkpoints"
    if ckpt.type == "local":
        return _local(ckpt, Path(model_dir), where)
    return _huggingface(ckpt, where)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, found as ``huggingface_hub`` finds it.

    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``
    (``$XDG_CACHE_HOME`` replacing ``~/.cache`` when set).
    """
    # HUGGINGFACE_HUB_CACHE is the older name huggingface_hub still honours.
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        hf_home = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _local(ckpt: Checkpoints, model_dir: Path, where: str) -> Path:
    path = Path(ckpt.path or "").expanduser()
    if not path.is_absolute():
        path = model_dir / path
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise ConfigError(
            f"{where}.path: {path} {problem} (a local checkpoint is a folder of weights; "
            "relative paths start at the model folder)"
        )
    return path


def _huggingface(ckpt: Checkpoints, where: str) -> Path:
    repo_id = ckpt.repo_id or ""
    revision = ckpt.revision or "main"
    cached = _cached_snapshot(repo_id, revision)
    if cached is not None:
        return cached

    offline = _offline()
    hub = None if offline else _import_hub()
    if hub is None:
        if offline:
            reason = "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
            fix = f"download it once with network access (e.g. `hf download {repo_id}`)"
        else:
            reason = "huggingface_hub is not installed"
            fix = "pip install huggingface_hub, or download it where it is installed"
        raise ConfigError(
            f"{where}: Hugging Face repo '{repo_id}' at revision '{revision}' is not in the "
            f"local cache ({_repo_folder(repo_id)}) and {reason}; {fix}, "
            "or set checkpoints type: local with a path to the weights"
        )

    try:
        return Path(hub.snapshot_download(repo_id, revision=ckpt.revision, token=ckpt.hf_token))
    except Exception as exc:  # huggingface_hub raises many types; each means the same here
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"{where}: could not download Hugging Face repo '{repo_id}' "
            f"(revision '{revision}'): {type(exc).__name__}: {first_line}"
        ) from exc


def _import_hub() -> ModuleType | None:
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        return None


def _repo_folder(repo_id: str) -> Path:
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def _cached_snapshot(repo_id: str, revision: str) -> Path | None:
    folder = _repo_folder(repo_id)
    if _COMMIT_RE.fullmatch(revision):
        commit = revision
    else:
        # refs/<branch or tag> holds the commit hash that snapshots/ is keyed by.
        ref = folder / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text(encoding="utf-8").strip()
    snapshot = folder / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
