"""Where a runner call's time goes outside gRPC: each step of W1 and W5, in isolation.

    python bench/breakdown.py

Times, in this process, the client's encode, protobuf (de)serialization, the runner's
request parsing, ``ModelHost.call`` and the client's decode, so the gap between the
runner and the floor in ``bench/run.py`` can be split into codec and transport.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import MODEL_DIR, PAYLOAD, make_jpeg

from jupyter_deploy.model import ModelHost
from jupyter_deploy.model.codec import decode_args, decoder, encode_args
from jupyter_deploy.proto import runner_pb2 as pb
from jupyter_deploy.runner._service import _reader


def timed(label: str, fn, n: int, cap_s: float = 20.0) -> None:
    fn()
    deadline = time.monotonic() + cap_s
    t0 = time.perf_counter()
    done = 0
    for _ in range(n):
        fn()
        done += 1
        if time.monotonic() > deadline:
            break
    print(f"  {label:48s} {(time.perf_counter() - t0) / done * 1e6:10.1f} µs")


def steps(host: ModelHost, meth: str, arg: dict, n: int) -> None:
    """Time each step of one call of ``meth`` with ``arg``."""
    read = _reader(pb.PredictRequest, 64 << 20)
    spec = host.specs[meth]
    sig = spec.signature()
    print(f"{meth}:")
    timed("client: bind + encode_args + PredictRequest",
          lambda: pb.PredictRequest(method=meth, args=encode_args(spec, sig.bind(**arg).arguments)), n)
    req = pb.PredictRequest(method=meth, args=encode_args(spec, arg))
    timed("client: request SerializeToString", req.SerializeToString, n)
    data = req.SerializeToString()
    timed("runner: parse request (_reader)", lambda: read(data), n)
    parsed = read(data)
    timed("runner: decode_args", lambda: decode_args(spec, parsed.args), n)
    timed("runner: host.call (decode, model, encode)", lambda: host.call(parsed, 10.0), n)
    resp = host.call(parsed)
    timed("runner: response SerializeToString", resp.SerializeToString, n)
    out = resp.SerializeToString()
    dec = decoder(spec.returns)
    timed("client: response FromString + decode", lambda: dec(pb.PredictResponse.FromString(out).output), n)
    if meth == "image_size":
        from PIL import Image

        def decode_only() -> None:
            Image.open(io.BytesIO(arg["image"])).load()

        def in_place() -> bytes:
            r = pb.PredictRequest(method=meth)
            e = r.args.add()
            e.key = "image"
            e.value.bytes = arg["image"]
            return r.SerializeToString()

        timed("model work alone: Pillow decode", decode_only, n)
        timed("for comparison: request built in place + serialize", in_place, n)


def main() -> int:
    host = ModelHost(MODEL_DIR)
    host.load()
    steps(host, "echo", {"text": PAYLOAD}, 20000)
    steps(host, "image_size", {"image": make_jpeg()}, 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
