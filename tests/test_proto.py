"""The committed generated modules are exactly what grpcio-tools makes of the .proto files."""

from pathlib import Path

from jupyter_deploy.proto import _generate


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    written = _generate.generate(tmp_path)
    assert written, "no module was generated"
    for path in written:
        committed = _generate.ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is not committed; run python -m jupyter_deploy.proto._generate"
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} differs from the .proto; run python -m jupyter_deploy.proto._generate")
