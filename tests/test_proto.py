"""The committed generated modules are exactly what the pinned grpcio-tools makes of the .proto
files, and the package's protobuf/grpcio lower bounds are what those modules need."""

import re
from importlib import metadata
from pathlib import Path

from jupyter_deploy.proto import _generate

PYPROJECT = (_generate.ROOT / "pyproject.toml").read_text()


def _pinned_tools() -> str:
    return re.search(r'"grpcio-tools==([\d.]+)"', PYPROJECT).group(1)


def _floor(package: str) -> str:
    return re.search(rf'"{re.escape(package)}>=([\d.]+)"', PYPROJECT).group(1)


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    installed = metadata.version("grpcio-tools")
    assert installed == _pinned_tools(), (
        f"grpcio-tools {installed} is installed, the test extra pins {_pinned_tools()} (the one that "
        "generated the committed modules): pip install '.[test]'")
    written = _generate.generate(tmp_path)
    assert written, "no module was generated"
    assert {p.relative_to(tmp_path).as_posix().replace("_pb2_grpc.py", ".proto").replace("_pb2.pyi", ".proto")
            .replace("_pb2.py", ".proto") for p in written} == set(_generate.PROTOS)  # every .proto
    for path in written:
        committed = _generate.ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is not committed; run python -m jupyter_deploy.proto._generate"
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} differs from the .proto; run python -m jupyter_deploy.proto._generate")


def test_the_lower_bounds_are_what_the_committed_modules_need() -> None:
    for proto in _generate.PROTOS:
        stem = _generate.ROOT / proto.removesuffix(".proto")
        gencode = re.search(r"# Protobuf Python Version: ([\d.]+)", Path(f"{stem}_pb2.py").read_text()).group(1)
        assert gencode == _floor("protobuf"), f"{stem}_pb2.py needs protobuf>={gencode}"
        grpc_gen = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", Path(f"{stem}_pb2_grpc.py").read_text())
        assert grpc_gen.group(1) == _floor("grpcio") == _floor("grpcio-health-checking") == _pinned_tools()
