"""Regenerate the committed protobuf and gRPC modules.

    python -m jupyter_deploy.proto._generate          # rewrite them in place
    python -m jupyter_deploy.proto._generate OUT_DIR  # write them under OUT_DIR

Needs grpcio-tools, exactly the version the test extra pins: the oldest whose output
works with the oldest protobuf runtime still maintained, so that the package installs
beside others that hold protobuf back (see pyproject.toml). Every ``.proto`` under this
folder is compiled. The generated files are committed so that a plain install imports
them; a test regenerates them and fails on any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent.parent  # holds the jupyter_deploy package
PROTOS = sorted(p.relative_to(ROOT).as_posix() for p in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto of the package into out_dir; return the files written."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTOS}")
    return sorted(p for p in out_dir.rglob("*_pb2*.py*") if p.suffix in (".py", ".pyi"))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(target):
        print(path)
