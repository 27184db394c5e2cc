"""``python -m jupyter_deploy.runner``: serve one model folder until stopped.

It prints ``listening on HOST:PORT`` once the port is bound (health is
NOT_SERVING while ``load_model`` runs), then ``serving`` once the model is
loaded (health SERVING). ``--port-file PATH`` also writes the bound port to
PATH (atomically), so a supervisor learns it without parsing stdout. A model
that fails to import or load makes it exit non-zero after printing the
reason. SIGTERM or SIGINT stop it gracefully. When the model's own code raised (its import,
``load_model``, ``test``), the exception is also recorded in the replica's telemetry folder
(``failure.json``), so the control plane fails the deployment with it rather than restarting.

With ``JUPYTER_DEPLOY_VERIFY_KEY`` (an Ed25519 public key, hex) and
``DEPLOYMENT_ID`` in its environment (the control plane sets both), every call
must carry a route token signed by the matching private key, which the runner
never sees (see ``jupyter_deploy._tokens``); without them it serves anyone who
can reach it, so it listens on loopback only.

On Linux the runner makes itself non-dumpable first thing: other processes of
the same OS user (other replicas, when the daemon is not root) then cannot read
its ``/proc/<pid>/environ`` (its secrets) or its memory.

Example::

    python -m jupyter_deploy.runner --model-path models/echo --port-file /tmp/echo.port
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .. import _wire
from .._address import is_loopback, split_address
from ..errors import DeployError

EXIT_BAD_MODEL = 2
EXIT_LOAD_FAILED = 3
EXIT_TEST_FAILED = 4
#: The runner's supervisor (a Ray actor) died: the runner stops with it.
EXIT_ORPHANED = 6
#: Seconds a stopping runner refuses new calls before its server stops.
REFUSE_BEFORE_STOP = 0.5
#: Seconds calls in flight get to finish once the server stops.
STOP_GRACE = 5.0
#: Seconds a stopping runner waits for the calls and streams in flight to finish.
DRAIN_TIMEOUT = 30.0
#: Environment variable holding the hex public key that checks this runner's route tokens.
VERIFY_KEY_ENV = _wire.VERIFY_KEY_ENV


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jupyter_deploy.runner", description=__doc__.split("\n")[0])
    p.add_argument("--model-path", required=True, help="the model folder (config.yaml, 1/model.py)")
    p.add_argument("--address", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: any free one)")
    p.add_argument("--max-concurrency", type=int, default=32, help="calls served at once; more wait")
    p.add_argument("--max-message-mb", type=float, default=64, help="largest request accepted, in MiB")
    p.add_argument("--run-test", action="store_true", help="run the model's test() before serving")
    p.add_argument("--no-env", action="store_true",
                   help="use this interpreter even if requirements.txt asks for more")
    p.add_argument("--port-file", help="write the bound port to this file once listening")
    p.add_argument("--inference-batcher", metavar="JSON", default=None,
                   help="batch concurrent calls of batchable methods, e.g. "
                        "'{\"enabled\": true, \"max_batch_size\": 32, \"max_latency_ms\": 5, \"timeout_ms\": 10000}'")
    p.add_argument("--memory-limit", metavar="BYTES", default=None,
                   help="stop (exit code 5) when resident memory goes over this, e.g. 2Gi")
    p.add_argument("--cpu-limit", metavar="CORES", default=None,
                   help="pin the process to this many cores (rounded up), e.g. 2 or 500m")
    p.add_argument("--no-transformer", action="store_true",
                   help="do not run 1/transformer.py around the model's methods")
    return p


def _verify_key() -> tuple[bytes, str] | None:
    """The route-token verification key and deployment id from the environment, or None when unset."""
    key_hex = os.environ.pop(VERIFY_KEY_ENV, "")  # popped: processes the model starts need not see it
    if not key_hex:
        return None
    deployment_id = os.environ.get("DEPLOYMENT_ID", "")
    if not deployment_id:
        raise ValueError(f"{VERIFY_KEY_ENV} is set but DEPLOYMENT_ID is not: a route token names "
                         "its deployment, so the runner needs both")
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise ValueError(f"{VERIFY_KEY_ENV} is not a hex string") from None
    from .._tokens import PUBLIC_KEY_BYTES

    if len(key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"{VERIFY_KEY_ENV} is {len(key)} bytes; an Ed25519 public key is {PUBLIC_KEY_BYTES}")
    return key, deployment_id


def _not_dumpable() -> None:
    """Make this process non-dumpable (Linux): its /proc files become root's, out of reach of
    other processes of the same user. Elsewhere nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def _exit_with_parent() -> None:
    """Under a supervisor that can die without stopping us (a Ray actor's worker, SIGKILLed),
    exit once it is gone: nothing else would ever stop this runner. Its pid is in ``PARENT_ENV``."""
    from ._ray_actor import PARENT_ENV

    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _apply_limits(args: argparse.Namespace, say, fail) -> None:
    from ..config import parse_quantity
    from ._limits import EXIT_OUT_OF_MEMORY, MemoryWatch, limit_cpus

    if args.cpu_limit is not None:
        try:
            cores = limit_cpus(parse_quantity(args.cpu_limit))
        except ValueError as e:
            raise ValueError(f"--cpu-limit: {e}") from None
        say(f"cpu limit {args.cpu_limit}: " + (f"pinned to cores {cores}" if cores is not None
                                                 else "not bound (no CPU affinity on this platform)"))
    if args.memory_limit is not None:
        try:
            limit = int(parse_quantity(args.memory_limit))
        except ValueError as e:
            raise ValueError(f"--memory-limit: {e}") from None

        def exceeded(used: int) -> None:
            fail(f"out of memory: resident memory {used / 2**20:.0f} MiB is over the replica's limit of "
                 f"{limit / 2**20:.0f} MiB (inference_compute_info.cpu_memory); stopping")
            os._exit(EXIT_OUT_OF_MEMORY)  # at once: the model is still allocating

        MemoryWatch(limit, exceeded).start()
        say(f"memory limit {limit / 2**20:.0f} MiB (resident memory, watched)")


def _json_flag(text: str | None, flag: str) -> object:
    """A flag's JSON value (None when not given); ValueError saying what is wrong."""
    if text is None:
        return None
    import json

    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{flag}: not valid JSON ({e})") from None


def _write_port(path: Path, port: int, ipc_endpoint: str = "") -> None:
    # Temp file + rename: a reader polling for the file never sees it half written. The ipc
    # endpoint, where there is one, goes to its own file first: once the port file is there, so is it.
    if ipc_endpoint:
        _write_atomically(_wire.ipc_file(path), f"{ipc_endpoint}\n")
    _write_atomically(path, f"{port}\n")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _relative(text: str, model_dir: Path) -> str:
    """``text`` with the model folder's absolute path left out: frames read ``1/model.py``, wherever
    the replica's copy of the version lies (a sandbox's, the registry's)."""
    for root in {str(model_dir.resolve()), str(model_dir)}:
        text = text.replace(root.rstrip("/") + "/", "")
    return text


def grpc_listener_off() -> None:
    """Turn grpc's EventEngine listener off; call before grpc loads (the runner template does, too).

    With it off, accepted connections are iomgr endpoints that the server's own completion-queue
    poll reads, one thread hop less per call. Measured (bench/grpcpath_ab.py, two interleaved runs):
    runner CPU per W1a call 365 -> 290-310 µs, W1a p50 9-16 % lower. A GRPC_EXPERIMENTS that names
    the listener wins; one that names other experiments (the client's "-event_engine_client",
    inherited from a parent) is added to.
    """
    experiments = os.environ.get("GRPC_EXPERIMENTS", "")
    if "event_engine_listener" not in experiments:
        os.environ["GRPC_EXPERIMENTS"] = ",".join(filter(None, (experiments, "-event_engine_listener")))


def _start_ipc(service, max_bytes: int, say):
    """The same-host ipc plane beside the gRPC server (see ``_ipc``); None where there is none
    (not Linux, no pyzmq, ``JUPYTER_DEPLOY_DATA_PLANE=grpc``, or it cannot bind)."""
    if os.environ.get(_wire.DATA_PLANE_ENV, "").lower() == "grpc":
        return None
    try:
        from . import _ipc
    except ImportError:
        return None
    if not _ipc.available():
        return None
    try:
        ipc = _ipc.IpcServer(service, max_bytes)
    except Exception as e:  # noqa: BLE001 - zmq refused the socket: gRPC alone still serves
        say(f"note: no same-host ipc plane ({e}); calls go over gRPC")
        return None
    ipc.start()
    return ipc


def main(argv: list[str] | None = None) -> int:
    _not_dumpable()  # first, and again after the re-exec below (an exec makes a process dumpable again)
    grpc_listener_off()
    args = _parser().parse_args(argv)
    say = lambda msg: print(f"jupyter_deploy runner: {msg}", flush=True)  # noqa: E731
    fail = lambda msg: print(f"jupyter_deploy runner: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    model_dir = Path(args.model_path)

    from ._telemetry import write_step

    if not args.no_env:
        write_step("environment")
        from ..environment import ensure_environment
        from ..errors import EnvironmentSetupError

        try:
            python = ensure_environment(model_dir / "requirements.txt", log=say)
        except EnvironmentSetupError as e:
            fail(str(e))
            return EXIT_BAD_MODEL
        if python != sys.executable:  # not realpath: a venv's python links to its base
            # Start over inside the model's environment (it sees this one's packages too).
            argv = [python, "-m", "jupyter_deploy.runner", *(argv if argv is not None else sys.argv[1:]), "--no-env"]
            os.execv(python, argv)

    from ._ray_actor import PARENT_ENV

    # A Ray actor's runner serves callers on other hosts: gRPC only (see _start_ipc).
    supervised = bool(os.environ.get(PARENT_ENV))
    _exit_with_parent()
    # After the re-exec above, which must carry the key along to the model's environment.
    try:
        auth = _verify_key()
    except ValueError as e:
        fail(str(e))
        return EXIT_BAD_MODEL
    # Limits first: CPU affinity before any thread starts, the memory watch before the model loads.
    try:
        _apply_limits(args, say, fail)
    except ValueError as e:
        fail(str(e))
        return EXIT_BAD_MODEL
    try:
        listen_host = split_address(args.address)[0]
    except DeployError as e:
        fail(str(e))
        return EXIT_BAD_MODEL
    if auth is None and not is_loopback(listen_host):
        fail(f"refusing to listen on {args.address}: a runner without a verification key serves "
             "without tokens, so it listens on loopback only (use 127.0.0.1:PORT)")
        return EXIT_BAD_MODEL

    from ..errors import ConfigError, ModelDefinitionError
    from ..model._batcher import BatcherSettings
    from ..model._host import ModelHost, TransformerLoadError
    from ._service import make_server
    from ._telemetry import write_failure

    try:
        batcher = BatcherSettings.from_mapping(_json_flag(args.inference_batcher, "--inference-batcher"))
    except ValueError as e:
        fail(str(e))
        return EXIT_BAD_MODEL
    write_step("import")
    try:
        host = ModelHost(model_dir, batcher=batcher, transformer=not args.no_transformer)
    except (ModelDefinitionError, ConfigError) as e:
        fail(f"cannot serve {model_dir}: {e}")
        write_failure("import", type(e).__name__, _relative(str(e), model_dir))
        return EXIT_BAD_MODEL
    if host.transformer_enabled:
        say(f"transformer: {host.transformer_cls.__name__} (1/transformer.py) runs around every call")
    elif host.transformer_cls is not None:
        say(f"note: transformer {host.transformer_cls.__name__} is turned off for this deployment")
    if host.batchers:
        say(f"inference batcher: {', '.join(host.batchers)} in batches of up to {batcher.max_batch_size}, "
            f"waiting up to {batcher.max_latency_ms:g} ms")
    elif batcher.enabled:
        say("note: inference_batcher is enabled but the model has no @ModelClass.method(batch=True); "
            "nothing is batched")
    try:
        server, service, health_servicer, port = make_server(
            host, args.address, max_concurrency=host.concurrency(args.max_concurrency),
            max_message_bytes=int(args.max_message_mb * 2**20), auth=auth)
    except (OSError, RuntimeError) as e:
        fail(str(e))
        return EXIT_BAD_MODEL
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    ipc = None if supervised else _start_ipc(service, int(args.max_message_mb * 2**20), say)
    if args.port_file:
        try:
            _write_port(Path(args.port_file), port, ipc.endpoint if ipc is not None else "")
        except OSError as e:
            fail(f"cannot write the port file: {e}")
            server.stop(0)
            return EXIT_BAD_MODEL
    say(f"listening on {args.address.rsplit(':', 1)[0]}:{port}")

    steps = [("load_model", host.load, EXIT_LOAD_FAILED)]
    if args.run_test:
        steps.append(("test", host.run_test, EXIT_TEST_FAILED))
    for name, step, code in steps:
        write_step(name)
        try:
            step()
        except TransformerLoadError as e:
            fail(str(e))
            write_failure("transformer", "TransformerError", _relative(str(e), model_dir))
            server.stop(0)
            return code
        except Exception as e:
            failure = host.model_failure(e)
            fail(f"{name}() failed: {failure.type}: {failure.message}\n{failure.traceback}")
            write_failure(name, failure.type, failure.message, _relative(failure.traceback, model_dir))
            server.stop(0)
            return code

    import gc

    from grpc_health.v1 import health_pb2

    # What exists now (modules, the model and its weights) lives as long as the runner: out of
    # the collector's sight, a full collection no longer walks it in the middle of a call.
    gc.freeze()
    service.ready.set()
    for name in ("", "jupyter_deploy.v1.Runner"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    say("serving")
    # The config is read only when something used it (the model, its checkpoints): so are its notes.
    for note in host.config.notes if host.config_read and host.config is not None else ():
        say(f"note: {note}")
    while not stop.wait(3600):
        pass
    health_servicer.enter_graceful_shutdown()
    # New calls get UNAVAILABLE while the ones in flight finish: a client takes that as
    # "resolve the route again and retry", whereas a call that reaches a server in the
    # middle of stopping is cancelled, which no client can safely retry. Keep refusing a
    # moment after the drain, for calls already on their way.
    service.drain(DRAIN_TIMEOUT)
    time.sleep(REFUSE_BEFORE_STOP)
    server.stop(grace=STOP_GRACE).wait()
    if ipc is not None:
        ipc.stop()
    service.close()  # the last call records reach the spool file
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
