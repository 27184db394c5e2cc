"""The model registry: models and their immutable versions, over content-addressed blobs.

A version is an archive (an uncompressed tar of a model folder, packed by the
client) plus what is known about it: its config.yaml, read from the archive and
checked here; the method signatures the client read in its own interpreter,
checked for form and replaced by what the version's first replica serves; and
the interpreter to run it with, if the uploader may name it (``_described``,
``_interpreters``). The daemon never imports model code; it only stores, lists,
exports and extracts archives.

A version appears in one transaction, after its blob is complete and verified,
so an upload cut off half way leaves no version; what it left on disk is
removed by ``startup_cleanup()``.

Example::

    registry = Registry(store, BlobStore(home / "blobs"), home / "versions")
    version = registry.upload("local", chunks)        # chunks: header, then data
    folder = registry.version_dir(version.id)         # extracted once, for runners
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import ids
from ..proto import control_pb2 as cpb
from ..proto import runner_pb2 as pb
from ._access import ADMIN, PLATFORM
from ._blobs import BlobStore
from ._described import archive_config, checked_description
from ._errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from ._interpreters import TRUSTED, Interpreters
from ._limits import refuse
from ._store import Store, now

log = logging.getLogger("jupyter_deploy.registry")

EXPORT_CHUNK = 1 << 20
DEFAULT_APP = "default"
_REQUIRED_FILES = ("config.yaml", "1/model.py")
_COUNT_VERSIONS = "SELECT COUNT(*) FROM versions WHERE user_id = ?"
_VERSION_COLUMNS = ("v.id, v.user_id, v.app_id, v.model_id, v.number, v.sha256, b.size, v.description, "
                    "v.config_json, v.python, v.created_at")


def check_id(value: str, what: str) -> str:
    """``value`` if it is a valid id, else InvalidArgument naming ``what``.

    >>> check_id("sentiment-v2", "model_id")
    'sentiment-v2'
    """
    kind = what.removesuffix("_id")  # "user_id" -> the user rule
    return ids.check_id(kind, value, label=what, error=InvalidArgument)


def check_archive(path: Path) -> None:
    """Refuse an archive that is not a tar of a model folder or that could escape its folder.

    Example::

        check_archive(blobs.path(sha))   # InvalidArgument: archive member '../evil' ...
    """
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
            for member in members:
                # Any absolute folder will do: the filter only checks where members would land.
                tarfile.data_filter(member, "/version")
    except tarfile.FilterError as e:
        raise InvalidArgument(f"unsafe archive: {e} (pack the folder with "
                              "jupyter_deploy.client._upload.pack_folder)") from None
    except tarfile.TarError as e:
        raise InvalidArgument(f"the archive is not an uncompressed tar ({e})") from None
    names = {m.name for m in members}
    missing = [n for n in _REQUIRED_FILES if n not in names]
    if missing:
        raise InvalidArgument(f"the archive lacks {', '.join(missing)}: a model folder holds "
                              "config.yaml, requirements.txt and 1/model.py")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` to ``dest`` atomically (a temp dir beside it, then a rename).

    Members that would land outside ``dest`` (absolute paths, ``..``, links out)
    are refused with InvalidArgument and nothing is left behind. If ``dest``
    already exists it is returned as it is.

    Example::

        extract_archive(blobs.path(sha), versions_dir / version_id)
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(tmp, filter="data")
        os.rename(tmp, dest)
    except tarfile.FilterError as e:
        raise InvalidArgument(f"{archive}: unsafe archive: {e}") from None
    except OSError:
        # Another thread or process extracted the same version first: keep theirs.
        if not dest.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _version(row: sqlite3.Row, deduplicated: bool = False) -> cpb.ModelVersion:
    return cpb.ModelVersion(
        id=row["id"],
        model=cpb.ModelRef(user_id=row["user_id"], app_id=row["app_id"], model_id=row["model_id"]),
        number=row["number"], sha256=row["sha256"], size=row["size"],
        description=pb.ModelDescription.FromString(row["description"]), config_json=row["config_json"],
        python=row["python"], created_at=row["created_at"], deduplicated=deduplicated)


def _name(key: tuple[str, str, str]) -> str:
    return ids.model_name(*key)


class Registry:
    """Models and immutable versions: upload, read, export, delete, extract for runners.

    Example::

        registry.upload("local", chunks).number                   # 1
        registry.get_version(cpb.VersionRef(model=ref)).number    # the latest: 1
        registry.delete(ref, in_use=compute.versions_in_use)
    """

    def __init__(self, store: Store, blobs: BlobStore, versions_dir: Path, *,
                 interpreters: Interpreters | None = None):
        self.store, self.blobs, self.versions_dir = store, blobs, Path(versions_dir)
        # The interpreters an upload may name (versions_dir is home/versions).
        self.interpreters = interpreters or Interpreters(self.versions_dir.parent)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        # Held from a blob's rename to its version's commit, and around GC, so that GC
        # never removes a blob that an upload is about to reference.
        self._commit_lock = threading.Lock()

    # ------------------------------------------------------------ upload

    def upload(self, caller: str, chunks: Iterator[cpb.UploadChunk], limits: Any = None) -> cpb.ModelVersion:
        """Store an upload (a header chunk, then data chunks) as a new version.

        If the model's latest version has the same content, that version is
        returned with ``deduplicated=True`` and nothing is added. ``limits`` (a
        ``configs.limits.LimitsConfig``): the owner's ``max_upload_mb`` and
        ``max_versions`` are checked at the header, before any byte is stored, and
        the version count again in the transaction that adds the version. The header's
        config is ignored (the archive's is read), its description checked, its
        interpreter refused unless the caller may name it.
        """
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("an upload starts with a header chunk (model, sha256, size); "
                                  "upload with Client.upload_model or `jupyter-deploy upload`")
        header = first.header
        key = self._key(header.model, caller)
        # The admin installs the models the platform offers everyone (the shared nodepool serves them).
        if key[0] != caller and not (caller == ADMIN and key[0] == PLATFORM):
            raise PermissionDenied(f"user {caller!r} cannot upload into user {key[0]!r}'s models")
        if header.size <= 0:
            raise InvalidArgument("the upload header gives no size; upload with Client.upload_model")
        mine = limits.for_user(key[0]) if limits is not None else None
        if mine is not None:
            # The data may not outgrow the header's size (checked below), so this bounds what is stored.
            if header.size > mine.max_upload_mb << 20:
                refuse("max_upload_mb", mine.max_upload_mb, f"an upload of {header.size / 2**20:.1f} MiB", key[0])
            self._check_versions(self.store.one(_COUNT_VERSIONS, (key[0],))[0], key[0], mine.max_versions)
        self.blobs.path(header.sha256)  # checks the sha's form before any byte is stored
        # What the header claims is checked before any byte is stored, too; it is stored as checked.
        trusted = cpb.UploadHeader(model=header.model, sha256=header.sha256, size=header.size,
                                   description=checked_description(header.description),
                                   python=self.interpreters.check(header.python, caller,
                                                                  "the upload's interpreter",
                                                                  exists=caller not in TRUSTED))

        with self.blobs.writer() as writer:
            writer.write(first.data)
            for chunk in chunks:
                writer.write(chunk.data)
                if writer.size > header.size:
                    raise InvalidArgument(f"the upload sent more than the {header.size} bytes "
                                          "its header announced")
            if writer.size != header.size:
                raise InvalidArgument(f"the upload ended after {writer.size} of {header.size} bytes; "
                                      "upload again")
            with self._commit_lock:
                sha = writer.commit(header.sha256)
                try:
                    check_archive(self.blobs.path(sha))
                    config = archive_config(self.blobs.path(sha))
                    trusted.description.model_id = config["model"]["id"]
                    return self._commit_version(key, sha, trusted, json.dumps(config),
                                                mine.max_versions if mine is not None else None)
                except BaseException:
                    self._gc()
                    raise

    @staticmethod
    def _check_versions(held: int, user_id: str, max_versions: int) -> None:
        """Refuse one more version of ``user_id``, who has ``held``, past ``max_versions``."""
        if held >= max_versions:
            refuse("max_versions", max_versions, "a new model version", user_id,
                   f"{held} versions now; delete the ones no deployment needs")

    def _commit_version(self, key: tuple[str, str, str], sha: str, header: cpb.UploadHeader,
                        config_json: str, max_versions: int | None = None) -> cpb.ModelVersion:
        user, app, _ = key
        stamp = now()
        with self.store.tx() as db:
            latest = db.execute(
                "SELECT id FROM versions WHERE user_id = ? AND app_id = ? AND model_id = ? "
                "AND sha256 = ? AND number = (SELECT MAX(number) FROM versions "
                "WHERE user_id = ? AND app_id = ? AND model_id = ?)", (*key, sha, *key)).fetchone()
            if latest is not None:
                version_id, deduplicated = latest["id"], True
            else:
                if max_versions is not None:  # again: other uploads may have ended meanwhile
                    self._check_versions(db.execute(_COUNT_VERSIONS, (user,)).fetchone()[0], user, max_versions)
                version_id, deduplicated = uuid.uuid4().hex, False
                db.execute("INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)", (user, stamp))
                db.execute("INSERT OR IGNORE INTO apps (user_id, id, created_at) VALUES (?, ?, ?)",
                           (user, app, stamp))
                db.execute("INSERT OR IGNORE INTO models (user_id, app_id, id, created_at) "
                           "VALUES (?, ?, ?, ?)", (*key, stamp))
                # Each version's config.yaml says who may see the model (model.visibility).
                visibility = json.loads(config_json).get("model", {}).get("visibility", "private")
                db.execute("UPDATE models SET visibility = ? WHERE user_id = ? AND app_id = ? AND id = ?",
                           (visibility if visibility in ("private", "public") else "private", *key))
                db.execute("INSERT OR IGNORE INTO blobs (sha256, size, created_at) VALUES (?, ?, ?)",
                           (sha, header.size, stamp))
                number = db.execute(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM versions "
                    "WHERE user_id = ? AND app_id = ? AND model_id = ?", key).fetchone()[0]
                db.execute(
                    "INSERT INTO versions (id, user_id, app_id, model_id, number, sha256, description, "
                    "config_json, python, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (version_id, *key, number, sha, header.description.SerializeToString(),
                     config_json, header.python, stamp))
            row = db.execute(f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN blobs b USING (sha256) "
                             "WHERE v.id = ?", (version_id,)).fetchone()
        return _version(row, deduplicated)

    def served_description(self, version_id: str, description: pb.ModelDescription) -> None:
        """Keep what a replica of the version answered to Describe, where it differs from what the
        uploader said (``_described.ServedDescriptions`` calls it)."""
        row = self.store.one("SELECT description FROM versions WHERE id = ?", (version_id,))
        if row is None or pb.ModelDescription.FromString(row["description"]) == description:
            return
        try:
            checked = checked_description(description)
        except InvalidArgument as e:  # the model's own code says so: keep the uploader's, say why
            log.warning("version %s: its replica describes it in a form clients cannot use (%s)",
                        version_id, e.message)
            return
        log.warning("version %s: its uploader described methods %s; its replica serves %s: keeping the "
                    "replica's", version_id, sorted(m.name for m in pb.ModelDescription.FromString(
                        row["description"]).methods), sorted(m.name for m in checked.methods))
        with self.store.tx() as db:
            db.execute("UPDATE versions SET description = ? WHERE id = ?", (checked.SerializeToString(), version_id))

    # ------------------------------------------------------------ read

    def set_visibility(self, ref: cpb.ModelRef, visibility: str) -> cpb.Model:
        """Make a model ``public`` (others may see, call and deploy it) or ``private``."""
        if visibility not in ("private", "public"):
            raise InvalidArgument(f"visibility must be private or public, got {visibility!r}")
        key = self._key(ref, ref.user_id)
        self._model_row(key)
        with self.store.tx() as db:
            db.execute("UPDATE models SET visibility = ? WHERE user_id = ? AND app_id = ? AND id = ?",
                       (visibility, *key))
        return self.get_model(ref)

    def get_model(self, ref: cpb.ModelRef) -> cpb.Model:
        """One model, with its version count and latest version."""
        return self._model(self._model_row(self._key(ref)))

    def list_models(self, user_id: str, app_id: str | None = None) -> list[cpb.Model]:
        """A user's models (of one app when ``app_id`` is given), by app and id."""
        rows = self.store.query(
            "SELECT * FROM models WHERE user_id = ? AND (? IS NULL OR app_id = ?) ORDER BY app_id, id",
            (user_id, app_id, app_id))
        return [self._model(r) for r in rows]

    def list_versions(self, ref: cpb.ModelRef) -> list[cpb.ModelVersion]:
        """A model's versions, newest first."""
        key = self._key(ref)
        self._model_row(key)
        rows = self.store.query(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN blobs b USING (sha256) "
            "WHERE v.user_id = ? AND v.app_id = ? AND v.model_id = ? ORDER BY v.number DESC", key)
        return [_version(r) for r in rows]

    def get_version(self, ref: cpb.VersionRef) -> cpb.ModelVersion:
        """A version by id, by number, or the latest when neither is given.

        By id, the model may be left empty (the id is unique across models).
        """
        base = f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN blobs b USING (sha256) WHERE "
        if ref.version_id and not ref.model.model_id:
            row = self.store.one(base + "v.id = ?", (ref.version_id,))
            if row is None:
                raise NotFound(f"model version {ref.version_id!r} not found")
            return _version(row)
        key = self._key(ref.model)
        model_rows = base + "v.user_id = ? AND v.app_id = ? AND v.model_id = ? "
        if ref.version_id:
            row = self.store.one(model_rows + "AND v.id = ?", (*key, ref.version_id))
            wanted = f"version {ref.version_id!r}"
        elif ref.number:
            row = self.store.one(model_rows + "AND v.number = ?", (*key, ref.number))
            wanted = f"version number {ref.number}"
        else:
            row = self.store.one(model_rows + "ORDER BY v.number DESC LIMIT 1", key)
            wanted = "any version"
        if row is None:
            versions = self.list_versions(ref.model)  # NotFound when the model itself is missing
            have = ", ".join(f"#{v.number} {v.id}" for v in versions[:10]) or "none; upload one"
            raise NotFound(f"model {_name(key)} has no {wanted} (versions: {have})")
        return _version(row)

    def export(self, ref: cpb.VersionRef) -> Iterator[cpb.ExportChunk]:
        """A version's archive in 1 MiB chunks; the first carries its sha256.

        The version is looked up at once (NotFound raises here, not on the first chunk).
        """
        version = self.get_version(ref)
        path = self.blobs.path(version.sha256)

        def chunks() -> Iterator[cpb.ExportChunk]:
            with open(path, "rb") as f:
                yield cpb.ExportChunk(data=f.read(EXPORT_CHUNK), sha256=version.sha256)
                while data := f.read(EXPORT_CHUNK):
                    yield cpb.ExportChunk(data=data)

        return chunks()

    def version_dir(self, version_id: str) -> Path:
        """The version's folder, extracted once to ``versions_dir/<version_id>/``: runners run from it."""
        version = self.get_version(cpb.VersionRef(version_id=version_id))
        return extract_archive(self.blobs.path(version.sha256), self.versions_dir / version.id)

    # ------------------------------------------------------------ delete and clean up

    def delete(self, ref: cpb.ModelRef, version_id: str = "", force: bool = False,
               in_use: Callable[[list[str]], list[str]] = lambda ids: []) -> list[str]:
        """Delete a model (or one version of it); return the deleted version ids.

        ``in_use(version_ids)`` names the deployments that use them: the delete is
        refused while there are any, unless ``force``, which deletes those deployments too.
        """
        key = self._key(ref)
        if version_id:
            ids = [self.get_version(cpb.VersionRef(model=ref, version_id=version_id)).id]
            what = f"version {version_id} of model {_name(key)}"
        else:
            ids = [v.id for v in self.list_versions(ref)]
            what = f"model {_name(key)}"
        users = in_use(ids)
        if users and not force:
            raise FailedPrecondition(f"{what} is used by deployment(s) {', '.join(sorted(users))}; "
                                     "delete them first, or force it (force=True; jupyter-deploy model delete --force)")
        marks = ",".join("?" * len(ids))
        try:
            with self.store.tx() as db:
                if force:
                    # The deployments' rows reference the versions (and the model), so they
                    # cannot outlive them; the scheduler stops replicas whose row is gone.
                    db.execute(f"DELETE FROM deployments WHERE version_id IN ({marks}) "
                               f"OR pinned_version_id IN ({marks})", (*ids, *ids))
                    if not version_id:
                        db.execute("DELETE FROM deployments WHERE model_user_id = ? "
                                   "AND model_app_id = ? AND model_id = ?", key)
                db.execute(f"DELETE FROM versions WHERE id IN ({marks})", tuple(ids))
                if not version_id:
                    db.execute("DELETE FROM models WHERE user_id = ? AND app_id = ? AND id = ?", key)
        except sqlite3.IntegrityError:
            raise FailedPrecondition(f"{what} is still referenced by a deployment that is stopping; "
                                     "try again once it is gone") from None
        with self._commit_lock:
            self._gc()
        for vid in ids:
            shutil.rmtree(self.versions_dir / vid, ignore_errors=True)
        return ids

    def startup_cleanup(self) -> None:
        """Remove what a crash left: partial uploads, unreferenced blobs, stale extracted folders.

        Call it before serving, when no upload is under way.
        """
        self.blobs.cleanup_tmp()
        with self._commit_lock:
            self._gc()
        live = {r["id"] for r in self.store.query("SELECT id FROM versions")}
        for entry in self.versions_dir.iterdir():
            if entry.name not in live:
                shutil.rmtree(entry, ignore_errors=True)

    def _gc(self) -> None:
        # Removes the blobs (rows, then files) that no version references. Callers hold
        # _commit_lock, so no upload is between its blob's rename and its version's commit.
        with self.store.tx() as db:
            db.execute("DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM versions)")
            referenced = {r[0] for r in db.execute("SELECT sha256 FROM versions")}
        self.blobs.gc(referenced)

    # ------------------------------------------------------------ helpers

    def _key(self, ref: cpb.ModelRef, caller: str = "") -> tuple[str, str, str]:
        user = ref.user_id or caller
        if not user:
            raise InvalidArgument("name the model's owner (user_id)")
        if not ref.model_id:
            raise InvalidArgument("name the model (model_id)")
        return (check_id(user, "user_id"), check_id(ref.app_id or DEFAULT_APP, "app_id"),
                check_id(ref.model_id, "model_id"))

    def _model_row(self, key: tuple[str, str, str]) -> sqlite3.Row:
        row = self.store.one("SELECT * FROM models WHERE user_id = ? AND app_id = ? AND id = ?", key)
        if row is not None:
            return row
        others = [r["id"] for r in self.store.query(
            "SELECT id FROM models WHERE user_id = ? AND app_id = ? ORDER BY id LIMIT 20", key[:2])]
        have = (f"models in {key[0]}/{key[1]}: {', '.join(others)}" if others
                else f"{key[0]}/{key[1]} has no models")
        raise NotFound(f"model {_name(key)} not found ({have}); upload it with client.upload_model(PATH) "
                       "or `jupyter-deploy upload PATH`")

    def _model(self, row: sqlite3.Row) -> cpb.Model:
        key = (row["user_id"], row["app_id"], row["id"])
        count = self.store.one("SELECT COUNT(*) AS n FROM versions WHERE user_id = ? AND app_id = ? "
                               "AND model_id = ?", key)["n"]
        model = cpb.Model(ref=cpb.ModelRef(user_id=key[0], app_id=key[1], model_id=key[2]),
                          created_at=row["created_at"], version_count=count,
                          visibility=row["visibility"])
        if count:
            model.latest.CopyFrom(self.get_version(cpb.VersionRef(model=model.ref)))
        return model
