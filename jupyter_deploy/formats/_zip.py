"""ZIP files in and out: a model version exported with its manifest, and safe extraction of any
ZIP a user gives (entries outside the root, symlinks and over-size archives are refused).

An export is the model folder's files at the ZIP's root (so unzipping it gives the folder)
plus ``jupyter_deploy_export.json``: the model and version it came from, the version's
signatures and config, and each file's sha256, size and executable bit. Imported, its files
pack (``client._upload.pack_folder``) into the very archive that was exported: same sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ModelDefinitionError

MANIFEST = "jupyter_deploy_export.json"
FORMAT = "jupyter_deploy/export-1"
#: The most a ZIP may unpack to (bytes), as the daemon's default upload limit (4096 MiB).
MAX_BYTES = 4096 << 20
#: Entries are dated so: the same version exports to the same bytes.
_DATE = (1980, 1, 1, 0, 0, 0)


def write_export(archive: bytes, dest: Path, manifest: dict[str, Any]) -> Path:
    """Write the version's archive (a tar of its folder) as the ZIP ``dest``, with its manifest.

    ``manifest`` gets the ``format`` and each file's checksum here. Written beside ``dest``
    and renamed, so a reader never sees half a ZIP.
    """
    files: dict[str, dict[str, Any]] = {}
    tmp = dest.with_name(f".{dest.name}.tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                executable = bool(member.mode & 0o111)
                info = zipfile.ZipInfo(member.name, _DATE)
                info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(info, data)
                files[member.name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                      "executable": executable}
            info = zipfile.ZipInfo(MANIFEST, _DATE)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, json.dumps({"format": FORMAT, **manifest, "files": files}, indent=2) + "\n")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract(zip_path: Path, dest: Path, max_bytes: int | None = None) -> Path:
    """Unpack ``zip_path`` into ``dest`` (new), refusing what could escape it or fill the disk.

    Refused, with nothing left behind: an entry with an absolute path or ``..``, a symlink,
    and an archive that unpacks to more than ``max_bytes`` (default ``MAX_BYTES``), counted as
    it is read, not as the ZIP claims. Executable bits are kept.
    """
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelDefinitionError(f"{zip_path}: not a ZIP file ({e})") from None
    with archive:
        infos = archive.infolist()
        for info in infos:
            _check_entry(zip_path, info)
        claimed = sum(i.file_size for i in infos)
        if claimed > limit:
            raise ModelDefinitionError(f"{zip_path}: unpacks to {claimed} bytes, over the limit of {limit} bytes")
        dest.mkdir(parents=True)
        try:
            _unpack(zip_path, archive, infos, dest, limit)
        except BaseException as e:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(e, (zipfile.BadZipFile, zlib.error, EOFError)):
                raise ModelDefinitionError(f"{zip_path}: a damaged ZIP ({e})") from None
            raise
    return dest


def _unpack(zip_path: Path, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path,
            limit: int) -> None:
    total = 0
    for info in infos:
        target = dest.joinpath(*PurePosixPath(info.filename).parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise ModelDefinitionError(f"{zip_path}: unpacks to more than the limit of {limit} bytes")
                out.write(chunk)
        mode = (info.external_attr >> 16) & 0o777
        os.chmod(target, 0o755 if mode & 0o111 else 0o644)


def _check_entry(zip_path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts or not parts:
        raise ModelDefinitionError(f"{zip_path}: entry {name!r} is outside the archive's folder; refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ModelDefinitionError(f"{zip_path}: entry {name!r} is a symbolic link; refused")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The export manifest in ``folder`` (None when it has none)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ModelDefinitionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDefinitionError(f"{path}: not a jupyter_deploy export manifest (format {FORMAT})")
    return manifest


def check_export(folder: Path, manifest: dict[str, Any]) -> None:
    """Refuse an unpacked export whose files are not the ones its manifest lists, byte for byte."""
    listed = manifest.get("files") or {}
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.name != MANIFEST)
    extra = sorted(set(present) - set(listed))
    missing = sorted(set(listed) - set(present))
    if extra or missing:
        what = "; ".join(part for part in (f"not listed: {', '.join(extra)}" if extra else "",
                                           f"missing: {', '.join(missing)}" if missing else "") if part)
        raise ModelDefinitionError(f"{folder}: the export's files differ from its manifest ({what})")
    for name, entry in listed.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if digest != entry.get("sha256"):
            raise ModelDefinitionError(f"{folder}: {name} differs from the export's manifest (sha256 {digest[:12]}, "
                                       f"expected {str(entry.get('sha256'))[:12]}); export the version again")
