"""Content-addressed files: a blob lives at ``root/<sha[:2]>/<sha>``.

A blob is written through a ``BlobWriter`` into ``root/tmp/`` while its hash
is computed, then renamed into place once the hash checks out, so a blob file
is always complete. Identical content lands on the same path (dedupe).

Example::

    blobs = BlobStore(home / "blobs")
    with blobs.writer() as w:
        w.write(b"hello")
        sha = w.commit(hashlib.sha256(b"hello").hexdigest())
    blobs.path(sha).read_bytes()   # b"hello"
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Self

from ._errors import InvalidArgument

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """One blob being written: ``write`` chunks, then ``commit`` or ``abort``.

    Used as a context manager, it aborts when the block raises before a commit.

    Example::

        w = blobs.writer()
        w.write(chunk)
        sha = w.commit(expected_sha)   # InvalidArgument if the data hashes otherwise
    """

    def __init__(self, store: BlobStore):
        self._store = store
        fd, tmp = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, expected_sha256: str) -> str:
        """Check the hash, move the blob into place and return its sha256."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha = self._hash.hexdigest()
        if sha != expected_sha256:
            self.abort()
            raise InvalidArgument(f"the data received hashes to sha256 {sha}, not {expected_sha256} "
                                  "as announced; it was corrupted on the way, upload again")
        dest = self._store.path(sha)
        if dest.exists():
            self._tmp.unlink()
        else:
            dest.parent.mkdir(exist_ok=True)
            os.replace(self._tmp, dest)
            _fsync_dir(dest.parent)
        return sha

    def abort(self) -> None:
        """Drop what was written (safe to call more than once)."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class BlobStore:
    """Immutable files named by their sha256, under ``root``.

    Example::

        blobs = BlobStore(Path("~/.jupyter_deploy/blobs").expanduser())
        blobs.exists(sha), blobs.path(sha)
        blobs.gc(referenced={sha})      # removes every other blob
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def path(self, sha256: str) -> Path:
        # Checked so that a sha from a request can never name a path outside root.
        if not _SHA256.fullmatch(sha256):
            raise InvalidArgument(f"bad sha256 {sha256[:80]!r}: expected 64 lowercase hex digits")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def all(self) -> set[str]:
        """The sha256 of every stored blob."""
        return {p.name for p in self.root.glob("??/*") if _SHA256.fullmatch(p.name)}

    def cleanup_tmp(self) -> list[str]:
        """Remove what interrupted writes left in ``tmp/``; return the names removed.

        Call it only when no write is under way (at start-up).
        """
        removed = []
        for p in self.tmp_dir.iterdir():
            p.unlink(missing_ok=True)
            removed.append(p.name)
        return removed

    def gc(self, referenced: set[str]) -> list[str]:
        """Remove every blob not in ``referenced``; return the sha256 of those removed."""
        removed = sorted(self.all() - referenced)
        for sha in removed:
            self.path(sha).unlink(missing_ok=True)
        return removed
