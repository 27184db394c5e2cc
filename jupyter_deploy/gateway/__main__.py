"""``python -m jupyter_deploy.gateway``: the gateway process (the daemon starts it).

    python -m jupyter_deploy.gateway --daemon 127.0.0.1:7700 --address 127.0.0.1:8000 \
        [--grpc-address 127.0.0.1:8001] [--tls-cert FILE --tls-key FILE]

The daemon passes ``--fd N`` (a listening socket it bound) instead of ``--address``, and
``--parent-pid``: the gateway exits when that process is gone. It prints
``jupyter_deploy gateway: listening on URL (grpc HOST:PORT)`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from .._address import split_address

#: Seconds between two checks that the daemon that started the gateway is still there.
PARENT_CHECK = 1.0


def _listener(args: argparse.Namespace) -> socket.socket:
    if args.fd is not None:
        return socket.socket(fileno=args.fd)
    host, port = split_address(args.address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


async def _serve(args: argparse.Namespace, sock: socket.socket) -> None:
    import uvicorn

    from ._app import DEFAULT_BODY_LIMIT, App
    from ._oip_grpc import start_grpc
    from ._routes import Routes

    routes = Routes(args.daemon, daemon_tls=args.daemon_tls, daemon_ca=args.tls_cert)
    limit = int(os.environ.get("JUPYTER_DEPLOY_GATEWAY_BODY_LIMIT", DEFAULT_BODY_LIMIT))
    app = App(routes, body_limit=limit, fetch_urls=os.environ.get("JUPYTER_DEPLOY_GATEWAY_FETCH_URLS", "1") != "0")
    grpc_server = None
    if args.grpc_address:
        grpc_server = await start_grpc(app, args.grpc_address, args.tls_cert, args.tls_key)
    try:
        from ._http import HttpProtocol

        http: object = HttpProtocol  # uvicorn's server, our leaner HTTP/1.1 protocol (see _http)
    except ImportError:  # no httptools
        http = "h11"
    # proxy_headers off: nothing in the gateway reads the client's address or scheme, and the
    # middleware would cost every request a call. No "server: uvicorn" header: it tells a
    # client nothing, and each header line costs http.client about 2 µs to parse.
    config = uvicorn.Config(app, http=http, ws="auto", lifespan="on", log_level="warning", access_log=False,
                            proxy_headers=False, server_header=False, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                            timeout_keep_alive=75, limit_concurrency=args.limit_concurrency, ws_max_size=limit)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    url = args.url or f"{'https' if args.tls_cert else 'http'}://{host}:{port}"
    print(f"jupyter_deploy gateway: listening on {url}"
          + (f" (grpc {args.grpc_address})" if args.grpc_address else ""), flush=True)
    watch = asyncio.ensure_future(_watch_parent(args.parent_pid, server)) if args.parent_pid else None
    try:
        await server.serve(sockets=[sock])
    finally:
        if watch is not None:
            watch.cancel()
        if grpc_server is not None:
            await grpc_server.stop(2)


async def _watch_parent(pid: int, server: object) -> None:
    """End the gateway when the daemon that started it is gone (killed: it could not stop us)."""
    while True:
        await asyncio.sleep(PARENT_CHECK)
        if os.getppid() != pid:
            print("jupyter_deploy gateway: the daemon is gone; stopping", flush=True)
            server.should_exit = True  # type: ignore[attr-defined]
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jupyter_deploy.gateway")
    p.add_argument("--daemon", required=True, metavar="HOST:PORT", help="the control plane daemon")
    p.add_argument("--address", default="127.0.0.1:0", metavar="HOST:PORT", help="where to listen (HTTP)")
    p.add_argument("--fd", type=int, default=None, help="a listening socket to serve on instead")
    p.add_argument("--url", default=None, help="the base URL to print (the daemon's published one)")
    p.add_argument("--grpc-address", default=None, metavar="HOST:PORT",
                   help="the Open Inference Protocol gRPC listener (default: none)")
    p.add_argument("--tls-cert", metavar="FILE")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--daemon-tls", action="store_true", help="the daemon serves TLS")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--limit-concurrency", type=int, default=4096,
                   help="connections and requests at once; more get 503 (default 4096)")
    args = p.parse_args(argv)
    # Before grpc loads: its EventEngine client endpoints (on by default) read on threads of
    # their own, which hand each completion to grpc.aio's poller thread, which hands it to
    # the event loop; iomgr's endpoints are read by the aio poller itself, one thread hop
    # (and about one futex wake-up) less per runner call. Measured on the bench machine:
    # gateway CPU per W1a request 575 -> 475 µs, REST W1a p50 2.04x -> 1.93x the floor.
    # A name grpc no longer knows is logged and ignored; a GRPC_EXPERIMENTS of the user's wins.
    os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    sock = _listener(args)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_serve(args, sock))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
