"""The registry over a real SQLite store and real model folders (no daemon, no gRPC)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_model

from jupyter_deploy.client._upload import (
    describe_folder,
    pack_folder,
    unpack_archive,
    upload_chunks,
)
from jupyter_deploy.control._blobs import BlobStore
from jupyter_deploy.control._errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from jupyter_deploy.control._registry import Registry, extract_archive
from jupyter_deploy.control._store import Store
from jupyter_deploy.errors import ConfigError, ModelDefinitionError
from jupyter_deploy.proto import control_pb2 as cpb

pytestmark = pytest.mark.timeout(60)

ECHO = '''
from jupyter_deploy import ModelClass


class Echo(ModelClass):
    """Says back what it is told."""

    def load_model(self):
        self.prefix = "echo: "

    @ModelClass.method
    def predict(self, text: str, times: int = 1) -> str:
        """Repeat ``text``."""
        return self.prefix + text * times
'''

REF = cpb.ModelRef(user_id="local", app_id="default", model_id="echo")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = Store(tmp_path / "state.db")
    yield Registry(store, BlobStore(tmp_path / "blobs"), tmp_path / "versions")
    store.close()


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    folder = write_model(tmp_path / "echo", ECHO, model_id="echo")
    (folder / "1" / "weights.bin").write_bytes(bytes(range(256)) * 20_000)  # > 1 MiB: several chunks
    return folder


def chunks_for(folder: Path, chunk_size: int = 1 << 20) -> list[cpb.UploadChunk]:
    return list(upload_chunks(folder, cpb.ModelRef(user_id="local"), chunk_size=chunk_size))


def blob_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


# ---------------------------------------------------------------- upload


def test_upload_round_trip_numbers_versions_and_stores_the_description(registry, echo):
    v1 = registry.upload("local", chunks_for(echo))
    assert (v1.number, v1.deduplicated) == (1, False)
    assert (v1.model.user_id, v1.model.app_id, v1.model.model_id) == ("local", "default", "echo")
    assert v1.description.class_name == "Echo"
    assert v1.description.doc == "Says back what it is told."
    [method] = v1.description.methods
    assert method.name == "predict" and [p.name for p in method.parameters] == ["text", "times"]
    assert v1.python and '"id": "echo"' in v1.config_json

    (echo / "1" / "model.py").write_text(ECHO.replace("echo: ", "echo2: "))
    v2 = registry.upload("local", chunks_for(echo))
    assert (v2.number, v2.deduplicated) == (2, False) and v2.id != v1.id

    fetched = registry.get_version(cpb.VersionRef(model=REF, number=1))
    assert fetched.description == v1.description and fetched.sha256 == v1.sha256
    assert registry.get_version(cpb.VersionRef(model=REF)).id == v2.id  # the latest
    assert registry.get_version(cpb.VersionRef(version_id=v1.id)).number == 1  # by id alone
    assert [v.number for v in registry.list_versions(REF)] == [2, 1]
    model = registry.get_model(REF)
    assert (model.version_count, model.latest.id) == (2, v2.id)
    assert [m.ref.model_id for m in registry.list_models("local")] == ["echo"]
    assert registry.list_models("local", "other-app") == []


def test_identical_content_dedupes_to_the_same_version_and_blob(registry, echo, tmp_path):
    v1 = registry.upload("local", chunks_for(echo))
    again = registry.upload("local", chunks_for(echo, chunk_size=1000))
    assert again.deduplicated and (again.id, again.number, again.sha256) == (v1.id, 1, v1.sha256)
    assert registry.get_model(REF).version_count == 1
    # Another model with the same content shares the blob.
    other = registry.upload("local", upload_chunks(echo, cpb.ModelRef(model_id="echo-copy")))
    assert other.sha256 == v1.sha256 and not other.deduplicated
    assert len(blob_files(tmp_path)) == 1


def _cut_off(chunks: list[cpb.UploadChunk], after: int) -> Iterator[cpb.UploadChunk]:
    yield from chunks[:after]
    raise ConnectionError("client went away")


@pytest.mark.parametrize("how", ["raises", "ends-early", "wrong-sha", "too-long"])
def test_an_upload_cut_off_half_way_leaves_nothing(registry, echo, tmp_path, how):
    chunks = chunks_for(echo, chunk_size=64 * 1024)
    assert len(chunks) > 3
    if how == "raises":
        stream, error = _cut_off(chunks, 2), ConnectionError
    elif how == "ends-early":
        stream, error = iter(chunks[:2]), InvalidArgument
    elif how == "wrong-sha":
        chunks[0].header.sha256 = hashlib.sha256(b"something else").hexdigest()
        stream, error = iter(chunks), InvalidArgument
    else:
        stream, error = iter([*chunks, cpb.UploadChunk(data=b"x")]), InvalidArgument
    with pytest.raises(error):
        registry.upload("local", stream)
    with pytest.raises(NotFound, match="local/default/models/echo not found"):
        registry.get_model(REF)
    assert blob_files(tmp_path) == []
    registry.startup_cleanup()
    assert blob_files(tmp_path) == [] and list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_startup_cleanup_removes_what_a_crash_left(registry, echo, tmp_path):
    kept = registry.upload("local", chunks_for(echo))
    registry.version_dir(kept.id)
    # A crash mid-upload, one between a blob's rename and its commit, one mid-extraction.
    (tmp_path / "blobs" / "tmp" / "upload-x").write_bytes(b"partial")
    orphan = registry.blobs.path("ab" * 32)
    orphan.parent.mkdir()
    orphan.write_bytes(b"orphan")
    (tmp_path / "versions" / f".{kept.id}.tmp").mkdir()
    (tmp_path / "versions" / "deadbeef").mkdir()
    registry.startup_cleanup()
    assert blob_files(tmp_path) == [registry.blobs.path(kept.sha256)]
    assert [p.name for p in (tmp_path / "versions").iterdir()] == [kept.id]


def test_upload_checks_the_header(registry, echo):
    chunks = chunks_for(echo)
    with pytest.raises(InvalidArgument, match="header"):
        registry.upload("local", iter(chunks[1:]))
    with pytest.raises(PermissionDenied, match="'bob'"):
        registry.upload("bob", iter(chunks))
    chunks[0].header.model.model_id = "../evil"
    with pytest.raises(InvalidArgument, match="bad model_id"):
        registry.upload("local", iter(chunks))


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _raw_upload(data: bytes) -> list[cpb.UploadChunk]:
    header = cpb.UploadHeader(model=REF, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return [cpb.UploadChunk(header=header), cpb.UploadChunk(data=data)]


def test_upload_refuses_an_unsafe_or_incomplete_archive(registry, tmp_path):
    evil = _tar({"config.yaml": b"model: {id: echo}\n", "1/model.py": b"", "../evil": b"x"})
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        registry.upload("local", _raw_upload(evil))
    with pytest.raises(InvalidArgument, match="lacks 1/model.py"):
        registry.upload("local", _raw_upload(_tar({"config.yaml": b"model: {id: echo}\n"})))
    assert blob_files(tmp_path) == []


# ---------------------------------------------------------------- read, export, extract


def test_not_found_errors_say_what_exists(registry, echo):
    v1 = registry.upload("local", chunks_for(echo))
    missing = r"local/default/models/nope not found \(models in local/default: echo\)"
    with pytest.raises(NotFound, match=missing):
        registry.get_model(cpb.ModelRef(user_id="local", model_id="nope"))
    with pytest.raises(NotFound, match=f"no version number 7 \\(versions: #1 {v1.id}\\)"):
        registry.get_version(cpb.VersionRef(model=REF, number=7))
    with pytest.raises(NotFound, match="'missing'"):
        registry.get_version(cpb.VersionRef(version_id="missing"))


def test_export_gives_back_the_uploaded_bytes_and_files(registry, echo, tmp_path):
    version = registry.upload("local", chunks_for(echo))
    exported = list(registry.export(cpb.VersionRef(model=REF, version_id=version.id)))
    assert exported[0].sha256 == version.sha256 and not exported[1].sha256
    assert [len(c.data) for c in exported[:-1]] == [1 << 20] * (len(exported) - 1)
    data = b"".join(c.data for c in exported)
    assert data == pack_folder(echo)
    assert tree(unpack_archive(data, tmp_path / "exported")) == tree(echo)
    with pytest.raises(FileExistsError, match="not an empty folder"):
        unpack_archive(data, tmp_path / "exported")
    with pytest.raises(NotFound):
        registry.export(cpb.VersionRef(model=REF, number=2))


def test_version_dir_is_extracted_once_and_equals_the_folder(registry, echo, tmp_path):
    version = registry.upload("local", chunks_for(echo))
    folder = registry.version_dir(version.id)
    assert folder == tmp_path / "versions" / version.id
    assert tree(folder) == tree(echo)
    marker = folder / "extracted-once"
    marker.write_text("")
    assert registry.version_dir(version.id) == folder and marker.exists()
    assert [p.name for p in (tmp_path / "versions").iterdir()] == [version.id]  # no temp dir left


@pytest.mark.parametrize("member", ["../evil", "1/../../evil"])
def test_extraction_refuses_members_outside_the_folder(tmp_path, member):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar({"config.yaml": b"", member: b"x"}))
    dest = tmp_path / "versions" / "v1"
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        extract_archive(archive, dest)
    assert not dest.exists() and list((tmp_path / "versions").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_extraction_refuses_links_out(tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as tar:
        link = tarfile.TarInfo("weights")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "link.tar").write_bytes(out.getvalue())
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        extract_archive(tmp_path / "link.tar", tmp_path / "versions" / "v1")


# ---------------------------------------------------------------- delete


def test_delete_is_refused_while_in_use_unless_forced(registry, echo, tmp_path):
    v1 = registry.upload("local", chunks_for(echo))
    registry.version_dir(v1.id)
    (echo / "requirements.txt").write_text("numpy\n")
    v2 = registry.upload("local", chunks_for(echo))
    assert len(blob_files(tmp_path)) == 2

    def in_use(ids: list[str]) -> list[str]:
        return ["dep1"] if v1.id in ids else []

    with pytest.raises(FailedPrecondition, match=f"version {v1.id} of model local/default/models/echo "
                                                 "is used by deployment.*dep1.*force=True"):
        registry.delete(REF, v1.id, in_use=in_use)
    assert registry.get_model(REF).version_count == 2

    assert registry.delete(REF, v1.id, force=True, in_use=in_use) == [v1.id]
    assert [v.id for v in registry.list_versions(REF)] == [v2.id]
    assert blob_files(tmp_path) == [registry.blobs.path(v2.sha256)]  # v1's blob collected
    assert not (tmp_path / "versions" / v1.id).exists()
    with pytest.raises(NotFound, match="no version"):
        registry.delete(REF, v1.id)

    registry.delete(REF, in_use=in_use)  # v2 is not in use: the whole model goes
    with pytest.raises(NotFound):
        registry.get_model(REF)
    assert blob_files(tmp_path) == []


def test_a_blob_shared_by_two_models_survives_deleting_one(registry, echo, tmp_path):
    registry.upload("local", chunks_for(echo))
    other = registry.upload("local", upload_chunks(echo, cpb.ModelRef(model_id="twin")))
    registry.delete(REF)
    assert blob_files(tmp_path) == [registry.blobs.path(other.sha256)]


# ---------------------------------------------------------------- the client side


def test_packing_is_deterministic_and_skips_caches(echo):
    first = pack_folder(echo)
    for junk in ("1/__pycache__/model.cpython-311.pyc", ".ipynb_checkpoints/x", ".git/HEAD"):
        (echo / junk).parent.mkdir(parents=True, exist_ok=True)
        (echo / junk).write_bytes(b"junk")
    (echo / "config.yaml").touch()  # a new mtime changes nothing
    assert pack_folder(echo) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
    assert names == sorted(names) == ["1/model.py", "1/weights.bin", "config.yaml", "requirements.txt"]


def test_describe_reports_a_syntax_error_with_file_and_line(tmp_path):
    broken = ECHO.replace("def predict(self, text: str", "def predict(self text")
    folder = write_model(tmp_path / "bad", broken)
    with pytest.raises(ModelDefinitionError, match=r"model\.py, line 12"):
        describe_folder(folder)
    with pytest.raises(ModelDefinitionError, match=r"model\.py, line 12"):
        upload_chunks(folder, cpb.ModelRef())  # raised before any chunk is made


def test_describe_reports_an_import_error_with_file_and_line(tmp_path):
    folder = write_model(tmp_path / "bad", "import no_such_package_xyz\n" + ECHO)
    where = r"model\.py, line 1: no module named 'no_such_package_xyz'"
    with pytest.raises(ModelDefinitionError, match=where):
        describe_folder(folder)


def test_describe_does_not_call_load_model_nor_import_in_the_caller(tmp_path):
    marker = tmp_path / "loaded"
    source = ECHO.replace('self.prefix = "echo: "', f'open({str(marker)!r}, "w").close()')
    folder = write_model(tmp_path / "m", "print('noise at import')\n" + source)
    import sys
    before = set(sys.modules)
    description, config_json = describe_folder(folder)
    assert [m.name for m in description.methods] == ["predict"]
    assert description.model_id == "test" and '"id": "test"' in config_json
    assert not marker.exists()
    assert not any(name.startswith("jupyter_deploy_model_") for name in set(sys.modules) - before)


def test_upload_chunks_checks_the_config_first(tmp_path):
    folder = write_model(tmp_path / "m", ECHO)
    (folder / "config.yaml").write_text("model: {id: 'bad id'}\n")
    with pytest.raises(ConfigError, match="model.id"):
        upload_chunks(folder, cpb.ModelRef())
