"""The floor for W1, W2 and W5: a bare grpcio server, bytes in and bytes out.

``python bench/floor.py [--address 127.0.0.1:0] [--workers 36]`` prints
``floor: listening on HOST:PORT`` once it serves, and stops on SIGTERM/SIGINT.

Methods of service ``bench.Floor`` (no protobuf, no codec: raw bytes):

- ``Echo`` (unary): returns the request bytes.
- ``Chunks`` (unary-stream): the request is an ASCII count ``n``; sends ``n``
  messages of 4 bytes, one per chunk.
- ``ImageSize`` (unary): decodes the request as an image with Pillow (full
  decode, ``.load()``) and returns ``b"WIDTH,HEIGHT"``.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "bench.Floor"
CHUNK = b"abcd"
MAX_CHUNKS = 10_000_000


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def chunks(request: bytes, context: grpc.ServicerContext):
    n = min(int(request or b"0"), MAX_CHUNKS)
    for _ in range(n):
        yield CHUNK


def image_size(request: bytes, context: grpc.ServicerContext) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(request))
    img.load()
    w, h = img.size
    return f"{w},{h}".encode()


def make_server(address: str, workers: int) -> tuple[grpc.Server, int]:
    # Same pool size and message limits as a runner with its defaults
    # (--max-concurrency 32 plus 4 spare threads), so the comparison is fair.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floor"),
        options=[("grpc.max_receive_message_length", 128 << 20),
                 ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", 0)],
    )
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Chunks": grpc.unary_stream_rpc_method_handler(chunks),
        "ImageSize": grpc.unary_unary_rpc_method_handler(image_size),
    })
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="bare grpcio floor server for the benchmarks")
    p.add_argument("--address", default="127.0.0.1:0")
    p.add_argument("--workers", type=int, default=36)
    args = p.parse_args(argv)
    import PIL.Image  # noqa: F401  (imported up front, as the runner's model does)

    server, port = make_server(args.address, args.workers)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"floor: listening on {args.address.rsplit(':', 1)[0]}:{port}", flush=True)
    while not stop.wait(3600):
        pass
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
