"""Deploy the README's echo model and call it, in whatever environment runs this (CI: one that
also holds tritonclient[grpc], so protobuf 6.x); then stop the daemon it started."""

import subprocess
import sys
from pathlib import Path

import google.protobuf
import tritonclient.grpc  # noqa: F401 - imported beside ours: both must load in one interpreter

from jupyter_deploy import Client

echo = Path(__file__).resolve().parent.parent / "notebooks" / "models" / "echo"
client = Client()
try:
    client.deploy(echo, timeout=300)
    model = client.model("echo")
    assert model.predict("hi") == "echo: hi"
    assert "".join(model.generate("a b")) == "echo: a b "
    print(f"smoke: deployed and called echo with protobuf {google.protobuf.__version__}")
finally:
    client.close()
    subprocess.run([sys.executable, "-m", "jupyter_deploy", "stop"], check=False)
