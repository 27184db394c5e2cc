"""The ``jupyter-deploy`` command line (also ``python -m jupyter_deploy``).

    jupyter-deploy init PATH [--template text|image|stream]
    jupyter-deploy run-locally PATH
    jupyter-deploy serve [--address HOST:PORT] [--tls-cert FILE --tls-key FILE] [--gateway-address HOST:PORT|off]
    jupyter-deploy gateway status
    jupyter-deploy user create NAME | user list          (the admin, `local`, only)
    jupyter-deploy token create | token list | token revoke ID
    jupyter-deploy status
    jupyter-deploy demo                                   (run notebooks/quickstart.ipynb headless)
    jupyter-deploy config schema model|cluster|nodepool|deployment   (JSON Schema of a config file)
    jupyter-deploy stop
    jupyter-deploy upload | model | cluster | nodepool | deployment | predict | logs ...
                                        (see _cli_platform: they mirror the Python API)

Failures print one short ``error:`` message (with the model's own traceback
where it helps) and exit non-zero; no stack of ours is shown.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .errors import DeployError

TEMPLATES = ("text", "image", "stream")


class CommandError(Exception):
    """A command failed in a way the user can fix; printed as ``error: ...``."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (CommandError, DeployError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="jupyter-deploy",
                                     description="Deploy models from notebooks: author, test and serve them.")
    parser.add_argument("--version", action="version", version=f"jupyter_deploy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="scaffold a working model folder")
    p.add_argument("path", help="the folder to create (must not exist or be empty)")
    p.add_argument("--template", choices=TEMPLATES, default="text", help="what kind of model (default: text)")
    p.add_argument("--model-id", help="the model id in config.yaml (default: from the folder name)")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("run-locally", help="load a model folder here, run its test(), time its methods")
    p.add_argument("path", help="the model folder")
    p.add_argument("--no-env", action="store_true",
                   help="use this interpreter even if requirements.txt asks for more")
    p.set_defaults(run=cmd_run_locally)

    p = sub.add_parser("serve", help="run the control plane daemon in the foreground")
    p.add_argument("--address", default="127.0.0.1:0",
                   help="HOST:PORT (default: 127.0.0.1, a free port); off loopback it needs TLS")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate (chain)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key")
    p.add_argument("--gateway-address", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="the HTTP gateway (REST, Open Inference Protocol, OpenAI-compatible); default "
                        "127.0.0.1, a free port; 'off' for none; off loopback it needs TLS")
    p.add_argument("--gateway-grpc-address", default=None, metavar="HOST:PORT",
                   help="the gateway's Open Inference Protocol gRPC port (default: a free port)")
    p.set_defaults(run=cmd_serve)
    p = sub.add_parser("status", help="show the running control plane daemon")
    p.set_defaults(run=cmd_status)
    p = sub.add_parser("gateway", help="the HTTP gateway the daemon runs")
    gsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    gsub.add_parser("status", help="its URLs, whether it answers, its restarts")
    p.set_defaults(run=cmd_gateway)
    p = sub.add_parser("stop", help="stop the control plane daemon and its runners")
    p.set_defaults(run=cmd_stop)
    p = sub.add_parser("user", aliases=["users"], help="users of the control plane (the admin, local, only)")
    usub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = usub.add_parser("create", help="create a user and print its token (shown only once)")
    q.add_argument("name", help="letters, digits, '-', '_' or '.'")
    _add_output(usub.add_parser("list", help="every user"))
    p.set_defaults(run=cmd_user)
    p = sub.add_parser("token", aliases=["tokens"], help="your personal access tokens")
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    tsub.add_parser("create", help="a new token (shown only once)")
    _add_output(tsub.add_parser("list", help="your tokens (never their text)"))
    q = tsub.add_parser("revoke", help="revoke one of your tokens; it stops working at once")
    q.add_argument("id", help="a token id (tok_...), from `token list`")
    p.set_defaults(run=cmd_token)
    p = sub.add_parser("limits", help="your limits on this daemon (limits.yaml) and what you hold of each")
    p.add_argument("--user", default=None, help="another user's (the admin only)")
    _add_output(p)
    p.set_defaults(run=cmd_limits)
    p = sub.add_parser("demo", help="run notebooks/quickstart.ipynb headless and print its results")
    p.add_argument("--notebook", default=None, metavar="PATH",
                   help="the notebook to run (default: notebooks/quickstart.ipynb of this checkout)")
    p.add_argument("--timeout", type=float, default=300, help="seconds one cell may take (default: 300)")
    p.add_argument("--kernel", default="python3", help="the Jupyter kernel to use (default: python3)")
    p.set_defaults(run=cmd_demo)
    p = sub.add_parser("config", help="the config files: their JSON Schema")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = csub.add_parser("schema", help="print the JSON Schema of a config file")
    q.add_argument("name", help="model (config.yaml), cluster, nodepool or deployment")
    p.set_defaults(run=cmd_config)
    from ._cli_platform import add_commands

    add_commands(sub)
    return parser


# ---------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    from .config import default_config, dump_config

    root = Path(args.path)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CommandError(f"{root} already exists and is not empty; choose a new folder")
    model_id = args.model_id or _model_id_from(root.resolve().name)
    config = dump_config(default_config(model_id))  # validates the id
    source = resources.files("jupyter_deploy.templates").joinpath(f"{args.template}.py").read_text()
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "1" / "model.py").write_text(source)
    (root / "config.yaml").write_text(config)
    (root / "requirements.txt").write_text("pillow\n" if args.template == "image" else "")
    print(f"created {root}/ (config.yaml, requirements.txt, 1/model.py) from the {args.template} template")
    print(f"try it: jupyter-deploy run-locally {root}")
    return 0


def _model_id_from(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")
    return cleaned or "model"


# ---------------------------------------------------------------- config


def cmd_config(args: argparse.Namespace) -> int:
    """``config schema NAME``: the JSON Schema an editor or a CI check can validate a file with."""
    import json

    from .configs import json_schema, schema_names

    if args.name not in schema_names():
        print(f"error: unknown config {args.name!r} (use {', '.join(schema_names())})", file=sys.stderr)
        return 2
    print(json.dumps(json_schema(args.name), indent=2))
    return 0


# ---------------------------------------------------------------- run-locally


def cmd_run_locally(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.exists():
        raise CommandError(f"no such model folder: {root}")
    if not args.no_env:
        from .environment import ensure_environment

        python = ensure_environment(root / "requirements.txt",
                                    log=lambda line: print(line, file=sys.stderr))
        if python != sys.executable:  # not realpath: a venv's python links to its base
            # The model needs packages this environment lacks: run in its own one.
            return subprocess.call([python, "-m", "jupyter_deploy", "run-locally", str(root), "--no-env"])

    from .model import load_folder

    clock = time.perf_counter()
    host = load_folder(root)  # imports model.py: syntax and import errors surface here
    timings = {"import": time.perf_counter() - clock}
    for note in host.config.notes if host.config is not None else ():
        print(f"note: {note}", file=sys.stderr)

    clock = time.perf_counter()
    try:
        host.load()
    except DeployError:
        raise
    except Exception as e:
        raise CommandError(_failure("load_model() failed", host, e)) from None
    timings["load_model"] = time.perf_counter() - clock

    stats = {name: _Stats() for name in host.specs}
    for name, spec in host.specs.items():
        if not spec.is_async:
            setattr(host.instance, name, _timed(getattr(host.instance, name), stats[name]))
    clock = time.perf_counter()
    try:
        tested = host.run_test()
    except Exception as e:
        raise CommandError(_failure("test() failed", host, e)) from None
    timings["test"] = time.perf_counter() - clock
    host.close()

    model_id = host.config.model.id if host.config is not None else host.cls.__name__
    print(f"\nmodel {model_id} ({host.cls.__name__}) from {root}")
    for step, seconds in timings.items():
        if step == "test" and not tested:
            print(f"  {'test()':<12} none defined (add a test() method to check the model)")
        else:
            label = f"{step}()" if step != "import" else "import"
            print(f"  {label:<12} {seconds * 1000:9.1f} ms{'  passed' if step == 'test' else ''}")
    rows = [("method", "shape", "signature", "calls in test", "mean")]
    for name, spec in host.specs.items():
        s = stats[name]
        mean = f"{s.total / s.calls * 1000:.2f} ms" if s.calls else "-"
        shape = spec.shape.replace("_", "-") + (" (batch)" if spec.batch else "")
        rows.append((name, shape, spec.signature_text, str(s.calls), mean))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


class _Stats:
    def __init__(self) -> None:
        self.calls = 0
        self.total = 0.0


def _timed(fn: Callable[..., Any], stats: _Stats) -> Callable[..., Any]:
    """Wrap a bound method so calls made by test() are counted and timed (streams until exhausted)."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        clock = time.perf_counter()
        out = fn(*args, **kwargs)
        if inspect.isgenerator(out):
            return _timed_iter(out, stats, clock)
        stats.calls += 1
        stats.total += time.perf_counter() - clock
        return out
    return call


def _timed_iter(gen: Any, stats: _Stats, clock: float) -> Any:
    try:
        yield from gen
    finally:
        stats.calls += 1
        stats.total += time.perf_counter() - clock


# ---------------------------------------------------------------- daemon


def cmd_serve(args: argparse.Namespace) -> int:
    from .control.daemon import main as daemon_main

    tls = [arg for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)) if value
           for arg in (flag, value)]
    gateway = ["--gateway-address", args.gateway_address]
    if args.gateway_grpc_address:
        gateway += ["--gateway-grpc-address", args.gateway_grpc_address]
    return daemon_main(["serve", "--address", args.address, *tls, *gateway])


def cmd_status(args: argparse.Namespace) -> int:
    from . import __version__
    from .client import _daemon

    try:
        info = _daemon.info()
    except _daemon.DaemonNotRunning as e:
        print(e)
        return 1
    record = _daemon.discover(Path(info.home))
    version = info.version
    if version != __version__:
        version += f" (this client: {__version__})"
    rows = [("address", info.address), ("pid", str(info.pid)), ("version", version),
            ("home", info.home)]
    if record and record["pid"] == info.pid:
        rows.append(("uptime", _duration(time.time() - record["started_at"])))
    rows.append(("gateway", f"{info.gateway_url} (OIP gRPC {info.gateway_grpc_address})"
                 if info.gateway_url else "off"))
    for name, value in rows:
        print(f"{name:<8} {value}")
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    """``gateway status``: the gateway's URLs, whether it answers, its process and restarts."""
    import json
    import urllib.request

    from .client import _daemon

    try:
        info = _daemon.info()
    except _daemon.DaemonNotRunning as e:
        print(e)
        return 1
    if not info.gateway_url:
        print("the daemon runs no gateway (it was started with --gateway-address off)")
        return 1
    rows = [("url", info.gateway_url), ("grpc", f"{info.gateway_grpc_address} (Open Inference Protocol)")]
    try:
        with urllib.request.urlopen(info.gateway_url + "/v1/gateway", timeout=5) as resp:
            state = json.loads(resp.read())
        rows += [("state", "answering"), ("pid", str(state["pid"])), ("uptime", _duration(state["uptime_s"]))]
    except (OSError, ValueError, KeyError) as e:
        rows.append(("state", f"not answering ({getattr(e, 'reason', e)}); the daemon restarts it"))
    try:
        record = json.loads((Path(info.home) / "gateway.json").read_text())
        rows.append(("restarts", str(record.get("restarts", 0))))
    except (OSError, ValueError):
        pass
    rows.append(("log", str(Path(info.home) / "logs" / "gateway.log")))
    for name, value in rows:
        print(f"{name:<8} {value}")
    return 0 if rows[2][1] == "answering" else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from .client import _daemon

    try:
        stopped = _daemon.stop()
    except _daemon.DaemonNotRunning as e:
        print(e)
        return 1
    print(f"stopped the control plane at {stopped.address} (pid {stopped.pid})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    argv = ["--timeout", str(args.timeout), "--kernel", args.kernel]
    if args.notebook:
        argv += ["--notebook", args.notebook]
    return demo_main(argv)


def cmd_user(args: argparse.Namespace) -> int:
    from ._cli_platform import _client, emit

    client = _client()
    if args.action == "create":
        user_id, token = client.create_user(args.name)
        print(f"created user {user_id}; its token:")
        _print_token(token)
    else:
        emit(args, client.list_users())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from ._cli_platform import _client, emit

    client = _client()
    if args.action == "create":
        token_id, token = client.create_token()
        print(f"created token {token_id}:")
        _print_token(token)
    elif args.action == "list":
        emit(args, [{"id": t["id"], "created_at": t["created_at"], "revoked_at": t["revoked_at"]}
                    for t in client.list_tokens()])
    else:
        client.revoke_token(args.id)
        print(f"revoked token {args.id}")
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    from ._cli_platform import _client, emit, table

    def number(value: float | None) -> str:
        return "" if value is None else str(int(value)) if float(value).is_integer() else f"{value:g}"

    limits = _client().limits(args.user)
    emit(args, limits, lambda: table([{"limit": name, "value": number(v["value"]), "used": number(v["used"]),
                                       "what": v["description"]} for name, v in limits.items()]))
    return 0


def _add_output(parser: argparse.ArgumentParser) -> None:
    from ._cli_platform import add_output

    add_output(parser)


def _print_token(token: str) -> None:
    print(f"  {token}")
    print("This token is shown only once: keep it now (use it with JUPYTER_DEPLOY_PAT=... or "
          "Client(pat=...)).")


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    if days:
        return f"{days}d {h}h {m}m"
    return f"{h}h {m}m {s}s" if h else f"{m}m {s}s" if m else f"{s}s"


def _failure(what: str, host: Any, e: BaseException) -> str:
    failure = host.model_failure(e)
    return f"{what}: {failure.type}: {failure.message}\n{failure.traceback.rstrip()}"


if __name__ == "__main__":
    sys.exit(main())
