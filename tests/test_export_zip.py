"""``Model.export("x.zip")`` and ``jupyter-deploy model export``: a version out as a ZIP with its
manifest, and back in (``upload_model``, ``jupyter-deploy upload``) with the same content hash,
into the same home or another; unsafe ZIPs refused. Real daemons, real runners."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import zipfile

import pytest
from conftest import write_model
from daemon_helpers import isolated_home

from jupyter_deploy import Client, Model, ModelDefinitionError
from jupyter_deploy.formats import _zip

pytestmark = pytest.mark.timeout(300)

SOURCE = '''
from jupyter_deploy import ModelClass
from helper import shout


class Shouter(ModelClass):
    @ModelClass.method
    def predict(self, text: str, times: int = 1) -> str:
        return shout(text) * times
'''


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A version uploaded in one home and exported there as a ZIP (and a folder); its sha256."""
    root = tmp_path_factory.mktemp("src")
    with isolated_home(tmp_path_factory, "export_src"):
        folder = write_model(root / "shouter", SOURCE, model_id="shouter")
        (folder / "1" / "helper.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
        (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
        (folder / "run.sh").chmod(0o755)
        client = Client()
        try:
            version = client.upload_model(folder)
            out = root / "out" / "shouter.zip"
            assert Model(model_id="shouter", client=client).export(out) == out
            cli = subprocess.run([sys.executable, "-m", "jupyter_deploy", "model", "export", "shouter",
                                  str(root / "cli.zip")], capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stderr
        finally:
            client.close()
    return out, root / "cli.zip", version.proto.sha256


def test_the_zip_holds_the_folder_and_a_manifest(exported):
    out, cli, sha = exported
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        manifest = json.loads(z.read(_zip.MANIFEST))
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
    assert names == ["1/helper.py", "1/model.py", "config.yaml", "requirements.txt", "run.sh", _zip.MANIFEST]
    assert manifest["format"] == "jupyter_deploy/export-1"
    assert manifest["version"]["sha256"] == sha and manifest["version"]["number"] == 1
    assert manifest["model"] == {"user_id": "local", "app_id": "default", "model_id": "shouter"}
    assert manifest["signatures"] == {"predict": "(text: str, times: int = 1) -> str"}
    assert manifest["config"]["model"]["id"] == "shouter"
    assert manifest["files"]["run.sh"]["executable"] and modes["run.sh"] == 0o755
    assert out.read_bytes() == cli.read_bytes()  # the CLI writes the same bytes: nothing varies


def test_an_export_imports_into_another_home_unchanged_and_serves(exported, tmp_path_factory):
    out, _, sha = exported
    with isolated_home(tmp_path_factory, "export_dst"):
        client = Client()
        try:
            version = client.upload_model(out)
            assert version.proto.sha256 == sha and version.model_id == "shouter"
            again = subprocess.run([sys.executable, "-m", "jupyter_deploy", "upload", str(out)],
                                   capture_output=True, text=True, timeout=120)
            assert again.returncode == 0, again.stderr
            assert again.stdout.startswith("uploaded shouter version 1 ("), again.stdout
            renamed = client.upload_model(out, model_id="shouter-copy")
            assert renamed.proto.sha256 == sha and renamed.number == 1
            dep = client.deploy(out, autoscale_config={"min_replicas": 1})
            assert dep.rollout.version.deduplicated
            assert Model(model_id="shouter", client=client).predict("hi", times=2) == "HI!HI!"
        finally:
            client.close()


def _zip_with(tmp_path, entries, name="bad.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for entry, data, mode in entries:
            info = zipfile.ZipInfo(entry)
            info.external_attr = mode << 16
            z.writestr(info, data)
    return path


@pytest.mark.parametrize("entry, mode, problem", [
    ("../evil.py", stat.S_IFREG | 0o644, "entry '../evil.py' is outside the archive's folder"),
    ("/etc/evil.py", stat.S_IFREG | 0o644, "entry '/etc/evil.py' is outside the archive's folder"),
    ("1/link.py", stat.S_IFLNK | 0o777, "entry '1/link.py' is a symbolic link"),
])
def test_unsafe_zips_are_refused_before_anything_is_written(tmp_path, entry, mode, problem):
    bad = _zip_with(tmp_path, [("1/model.py", "x = 1\n", stat.S_IFREG | 0o644), (entry, "/etc/passwd", mode)])
    with pytest.raises(ModelDefinitionError, match=problem):
        _zip.extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip_over_the_size_limit_is_refused_counting_what_it_unpacks(tmp_path, monkeypatch):
    big = _zip_with(tmp_path, [("1/model.py", "x" * 5000, stat.S_IFREG | 0o644)])
    with pytest.raises(ModelDefinitionError, match="unpacks to 5000 bytes, over the limit of 4096 bytes"):
        _zip.extract(big, tmp_path / "a", max_bytes=4096)
    # A ZIP that lies about its sizes is caught as it unpacks.
    data = bytearray(big.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        at = data.index(sig)
        data[at + offset:at + offset + 4] = (100).to_bytes(4, "little")
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    with pytest.raises(ModelDefinitionError, match="unpacks to more than the limit of 4096 bytes|a damaged ZIP"):
        _zip.extract(liar, tmp_path / "b", max_bytes=4096)
    assert not (tmp_path / "b").exists()


def test_a_tampered_export_is_refused_naming_the_file(exported, tmp_path, monkeypatch):
    out, _, _ = exported
    monkeypatch.setenv("JUPYTER_DEPLOY_HOME", str(tmp_path / "home"))
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data.replace(b"upper()", b"lower()") if info.filename == "1/helper.py" else data)
    from jupyter_deploy.formats import as_model_folder

    with pytest.raises(ModelDefinitionError, match="1/helper.py differs from the export's manifest"):
        as_model_folder(tampered, None)
