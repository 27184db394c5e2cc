"""Packing a model folder for upload, on the client side (never in the daemon).

The folder travels as an uncompressed tar whose bytes depend only on the
files' paths, contents and executable bits (sorted, owners and mtimes zeroed),
so uploading an unchanged folder again dedupes to the same version. Its method
signatures are read in a subprocess of the uploading interpreter: the class is
imported, ``load_model`` is not called, and the model's imports never land in
the caller's process.

Example::

    chunks = upload_chunks("models/echo", cpb.ModelRef(user_id="local"))
    stub.UploadModel(chunks)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import load_config
from ..errors import ModelDefinitionError
from ..folder import model_file
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb

SKIPPED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})
DESCRIBE_TIMEOUT = 600.0


def _files(root: Path) -> list[str]:
    """Relative POSIX paths of the folder's files, sorted; symlinks followed, cycles skipped."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames if os.path.isfile(os.path.join(dirpath, f))]
    return sorted(found)


def pack_folder(model_dir: str | os.PathLike) -> bytes:
    """The model folder as a deterministic tar (identical folders give identical bytes).

    >>> pack_folder("models/echo") == pack_folder("models/echo")
    True
    """
    root = Path(model_dir)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name in _files(root):
            path = root / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return out.getvalue()


def unpack_archive(data: bytes, dest: str | os.PathLike) -> Path:
    """Write an exported version's archive out as a model folder at ``dest`` (new or empty).

    Example::

        unpack_archive(archive_bytes, "exported/echo")   # config.yaml, requirements.txt, 1/...
    """
    path = Path(dest)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder; export into a new folder")
    path.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        tar.extractall(path, filter="data")
    return path


def describe_folder(model_dir: str | os.PathLike,
                    python: str = sys.executable) -> tuple[pb.ModelDescription, str]:
    """The folder's method signatures and its checked config (as JSON), read in ``python``.

    The model class is imported in a subprocess of ``python``; ``load_model`` is
    not called. An import or syntax error raises ``ModelDefinitionError`` naming
    the model's file and line; an invalid config.yaml raises ``ConfigError``.

    Example::

        description, config_json = describe_folder("models/echo")
        [m.name for m in description.methods]   # ['predict', 'generate']
    """
    root = Path(model_dir).resolve()
    file = model_file(root)
    # The child imports the model while this process checks config.yaml (two cores, not one).
    child = subprocess.Popen([python, "-m", __name__, "describe", str(root)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        config_json = json.dumps(load_config(root).to_dict())
        stdout, stderr = child.communicate(timeout=DESCRIBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ModelDefinitionError(f"importing {file} took more than {DESCRIBE_TIMEOUT:.0f} s; "
                                   "move slow work from import time into load_model") from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    proc = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    answer = _answer(proc.stdout) if proc.returncode in (0, 2) else {}
    if "description" in answer:
        return pb.ModelDescription.FromString(base64.b64decode(answer["description"])), config_json
    if "error" in answer:
        raise ModelDefinitionError(answer["error"])
    if "No module named 'jupyter_deploy'" in proc.stderr:
        raise ModelDefinitionError(f"{python} cannot import jupyter_deploy; install jupyter_deploy "
                                   "in that environment")
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    raise ModelDefinitionError(
        f"reading the methods of {file} failed (exit code {proc.returncode}):\n{tail}")


def _answer(stdout: str) -> dict:
    # The child's answer is its last stdout line: model code may print when imported.
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def upload_chunks(model_dir: str | os.PathLike, model_ref: cpb.ModelRef,
                  chunk_size: int = 1 << 20,
                  on_sent: Callable[[int, int], None] | None = None) -> Iterator[cpb.UploadChunk]:
    """The UploadModel request stream for a folder: a header chunk, then the archive's data.

    The folder is checked, described and packed here, before anything is sent:
    ``ConfigError`` and ``ModelDefinitionError`` raise from this call, not from
    inside the gRPC stream. The model id defaults to config.yaml's, and so
    does the app id; an empty user id means the caller. ``on_sent(sent, total)`` is told
    the archive's bytes handed to gRPC so far, after each chunk.

    Example::

        stub.UploadModel(upload_chunks("models/echo", cpb.ModelRef(model_id="echo")))
    """
    root = Path(model_dir)
    description, config_json = describe_folder(root)
    config = json.loads(config_json)["model"]
    data = pack_folder(root)
    header = cpb.UploadHeader(
        model=cpb.ModelRef(user_id=model_ref.user_id, app_id=model_ref.app_id or config["app_id"],
                           model_id=model_ref.model_id or config["id"]),
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), description=description,
        config_json=config_json, python=sys.executable)

    def chunks() -> Iterator[cpb.UploadChunk]:
        yield cpb.UploadChunk(header=header)
        view = memoryview(data)
        for start in range(0, len(data), chunk_size):
            yield cpb.UploadChunk(data=bytes(view[start:start + chunk_size]))
            if on_sent is not None:
                on_sent(min(start + chunk_size, len(data)), len(data))

    return chunks()


def _describe_main(model_dir: str) -> int:
    # Runs in the subprocess: import the class (load_model is not called) and print
    # {"description": base64} or {"error": message} as the last line of stdout.
    from ..errors import DeployError
    from ..model import ModelHost

    try:
        # Not load_folder: the parent checked config.yaml already; this process only reads signatures.
        description = ModelHost(model_dir).describe()
    except DeployError as e:
        print("\n" + json.dumps({"error": str(e)}))
        return 2
    encoded = base64.b64encode(description.SerializeToString()).decode()
    print("\n" + json.dumps({"description": encoded}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["describe"] or len(sys.argv) != 3:
        sys.exit("usage: python -m jupyter_deploy.client._upload describe MODEL_DIR")
    sys.exit(_describe_main(sys.argv[2]))
