"""``jupyter-deploy`` sub-commands over the control plane: they mirror the Python API.

    jupyter-deploy deploy PATH [--model-id ID] [--deployment-id ID] [--nodepool ID] [--cluster ID]
    jupyter-deploy upload PATH
    jupyter-deploy model list | versions MODEL | export MODEL DEST | delete MODEL
    jupyter-deploy cluster create|list|get|delete ...
    jupyter-deploy nodepool create|list|get|delete ... --cluster C
    jupyter-deploy deployment create|list|get|update|start|stop|delete|wait|metrics ...
    jupyter-deploy predict MODEL [VALUE] [name=value ...]
    jupyter-deploy logs DEPLOYMENT [--access | --inference] [--since SECONDS]
    jupyter-deploy secret set NAME [--value V] | list | delete NAME

A MODEL is ``user/app/models/id`` or just ``id`` (the caller's app ``default``).
Configs are the same YAML files the Python API takes.
"""

from __future__ import annotations

import argparse
import ast
import json
from typing import Any

from .errors import InputError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("deploy", help="upload a model folder (or model.py) if changed, create or roll out its "
                       "deployment, start it, wait until ready")
    p.add_argument("path", help="a model folder or a model.py")
    p.add_argument("--model-id", help="default: the id in config.yaml")
    p.add_argument("--app-id")
    p.add_argument("--deployment-id", help="default: the model id")
    p.add_argument("--nodepool", help="default: where the deployment is, else local")
    p.add_argument("--cluster", help="the nodepool's compute cluster (default: as --nodepool)")
    p.add_argument("--config", help="a deployment YAML file (autoscale_config, inference_batcher, ...)")
    _replica_flags(p)
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait until ready (default: 600)")
    p.add_argument("--no-wait", action="store_true", help="return once the rollout has begun")
    p.set_defaults(run=cmd_deploy)

    p = sub.add_parser("upload", help="upload a model folder as a new version (also: a ZIP from `model export`, "
                                      "a Clarifai folder, an MLflow model, an Oracle ADS artifact, a Hopsworks "
                                      "predictor)")
    p.add_argument("path")
    p.add_argument("--model-id", help="default: the id in config.yaml (another platform's package: its name)")
    p.add_argument("--app-id")
    p.set_defaults(run=cmd_upload)

    p = sub.add_parser("model", aliases=["models"], help="list, inspect, export or delete models")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="your models")
    add_output(q)
    q.set_defaults(run=cmd_model)
    for name, helptext in (("get", "a model and its methods"), ("versions", "a model's versions")):
        q = msub.add_parser(name, help=helptext)
        q.add_argument("model")
        add_output(q)
        q.set_defaults(run=cmd_model)
    q = msub.add_parser("export", help="write a version back to a folder, or to a ZIP with its manifest "
                                       "(DEST ending in .zip), which `upload` imports unchanged")
    q.add_argument("model")
    q.add_argument("dest")
    q.add_argument("--version", help="a version id (default: the latest)")
    q.set_defaults(run=cmd_model)
    q = msub.add_parser("delete", help="delete a model or one version")
    q.add_argument("model")
    q.add_argument("--version", help="only this version id")
    q.add_argument("--force", action="store_true", help="even if a deployment uses it")
    q.set_defaults(run=cmd_model)

    p = sub.add_parser("cluster", aliases=["clusters"], help="compute clusters")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = csub.add_parser("create")
    q.add_argument("id")
    q.add_argument("--config", help="a compute cluster YAML file")
    add_output(csub.add_parser("list"))
    q = csub.add_parser("get")
    q.add_argument("id")
    add_output(q, "json")
    q = csub.add_parser("delete")
    q.add_argument("ids", nargs="+")
    p.set_defaults(run=cmd_cluster)

    p = sub.add_parser("nodepool", aliases=["nodepools"], help="nodepools of a compute cluster")
    nsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action in ("create", "list", "get", "delete"):
        q = nsub.add_parser(action)
        if action == "delete":
            q.add_argument("ids", nargs="+")
        elif action != "list":
            q.add_argument("id")
        if action in ("list", "get"):
            add_output(q, "table" if action == "list" else "json")
        q.add_argument("--cluster", default="local", help="the compute cluster (default: local)")
        if action == "create":
            q.add_argument("--config", help="a nodepool YAML file")
    p.set_defaults(run=cmd_nodepool)

    p = sub.add_parser("deployment", aliases=["deployments"], help="deployments of models on nodepools")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = dsub.add_parser("create")
    q.add_argument("id", help="letters, digits, '-', '_' and '.' (at most 64)")
    q.add_argument("--model", help="the model to serve (or worker.model in --config)")
    q.add_argument("--cluster", default="local")
    q.add_argument("--nodepool", default="local")
    q.add_argument("--config", help="a deployment YAML file")
    _replica_flags(q)
    q.add_argument("--wait", action="store_true", help="wait until it is RUNNING")
    q = dsub.add_parser("list")
    q.add_argument("--cluster")
    q.add_argument("--nodepool")
    add_output(q)
    for action in ("get", "start", "stop", "wait", "metrics"):
        q = dsub.add_parser(action, help="requests, errors, latency, in flight, queue depth"
                            if action == "metrics" else None)
        q.add_argument("id")
        if action in ("get", "metrics"):
            add_output(q, "json" if action == "get" else "table")
        if action == "wait":
            q.add_argument("--timeout", type=float, default=120)
    q = dsub.add_parser("update")
    q.add_argument("id")
    q.add_argument("--config", help="a deployment YAML file (the keys to change)")
    _replica_flags(q)
    q = dsub.add_parser("delete")
    q.add_argument("ids", nargs="+")
    p.set_defaults(run=cmd_deployment)

    p = sub.add_parser("predict", help="call a deployed model")
    p.__class__ = _IntermixedParser  # `predict echo --method generate text=abc` (values after options)
    p.add_argument("model")
    p.add_argument("args", nargs="*", help="a value for the first parameter, and/or name=value "
                   "(values are Python literals, else text)")
    p.add_argument("--method", default="predict")
    p.add_argument("--deployment-id")
    p.add_argument("--cluster")
    p.add_argument("--nodepool")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("logs", help="a deployment's runner logs, access records (--access) or inference logs "
                       "(--inference)")
    p.add_argument("deployment")
    p.add_argument("--lines", type=int, default=200, help="the last N lines or records")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--access", action="store_true", help="one row per call: time, caller, method, status, "
                      "latency, bytes")
    kind.add_argument("--inference", action="store_true", help="the access rows with the inputs and outputs "
                      "the deployment's inference_logger records")
    p.add_argument("--since", type=float, metavar="SECONDS", help="with --access/--inference: only the last "
                   "SECONDS seconds")
    add_output(p)
    p.set_defaults(run=cmd_logs)

    p = sub.add_parser("secret", aliases=["secrets"],
                       help="secrets that deployments expose to their runners as environment variables")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = ssub.add_parser("set", help="create or replace a secret (the value is read from stdin or prompted for)")
    q.add_argument("name")
    q.add_argument("--value", help="the value (default: read from stdin, or asked for without echo; "
                   "a value given here may be seen in the shell's history and the process list)")
    add_output(ssub.add_parser("list", help="your secrets' names (never their values)"))
    q = ssub.add_parser("delete", help="delete a secret")
    q.add_argument("name")
    p.set_defaults(run=cmd_secret)


class _IntermixedParser(argparse.ArgumentParser):
    """Options may come before, between or after the positional values.

    Plain argparse fills a ``nargs="*"`` positional at its first chance, even
    with nothing, so values after an option were rejected as unrecognized.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _client() -> Any:
    from .client import Client

    return Client()


def _model(client: Any, address: str) -> Any:
    from .client import Model
    from .client._api import parse_model_url

    if "/" in address:
        user, app, model_id = parse_model_url(address)
        return Model(model_id=model_id, user_id=user, app_id=app, client=client)
    return Model(model_id=address, client=client)


#: Widest a table cell of free text (a reason, a description) gets; the rest is in `... get`.
CELL_WIDTH = 80
_BYTES_KEYS = ("memory", "size", "bytes")


def when(timestamp: float) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def quantity(n: float) -> str:
    """Bytes for people: ``23.5 GiB``, ``512 MiB``, ``10 KiB``, ``12 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            text = f"{n / size:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    return f"{int(n)} B"


def cell(column: str, value: Any) -> str:
    """One table cell: times, byte counts and settings readable, free text on one short line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if column.endswith("_at"):
            return when(value) if value else ""
        if any(key in column for key in _BYTES_KEYS):
            return quantity(value)
        return str(int(value)) if float(value).is_integer() else f"{value:g}"
    if isinstance(value, dict):  # e.g. a nodepool's instance_type
        return ", ".join(f"{k} {cell(k, v)}" for k, v in value.items() if v not in (None, "", {}, []))
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(column, v) for v in value)
    text = str(value).strip()
    lines = text.splitlines()
    first = lines[0] if lines else ""
    if len(first) > CELL_WIDTH or len(lines) > 1:
        first = first[:CELL_WIDTH - 1].rstrip() + "…"
    return first


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as an aligned text table (the CLI's listing format), each cell as ``cell`` writes it."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[str(c) for c in columns]] + [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def add_output(parser: Any, default: str = "table") -> None:
    """``-o/--output table|json|yaml`` on a list or get command."""
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default=default,
                        help=f"how to print it (default: {default}); json and yaml keep raw values, for scripts")


def emit(args: argparse.Namespace, data: Any, text: Any = None) -> None:
    """Print ``data`` as ``--output`` asks: a table of rows (or ``text()``), JSON or YAML."""
    output = getattr(args, "output", "table")
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        import yaml

        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip())
    elif text is not None:
        print(text())
    else:
        print(table(data))


def cmd_deploy(args: argparse.Namespace) -> int:
    from .client._api import _read_config

    shown: list[Any] = [None]

    def progress(rollout: Any) -> None:
        r = rollout.readiness
        # A line per change of state or of a replica's step (not per second of it, nor per chunk sent).
        key = ("upload" if rollout.action == "upload" else
               (r.state, r.ready, r.current, r.reason, tuple(step for _, step, _ in r.steps)) if r else None)
        if key != shown[0]:
            shown[0] = key
            print(rollout.describe(), flush=True)

    config = _read_config(args.config, {})
    scale = _scale_changes(args).get("autoscale_config")
    if scale:
        config["autoscale_config"] = {**config.get("autoscale_config", {}), **scale}
    deployment = _client().deploy(
        args.path, args.model_id, deployment_id=args.deployment_id, nodepool_id=args.nodepool,
        compute_cluster_id=args.cluster, app_id=args.app_id, wait=not args.no_wait, timeout=args.timeout,
        progress=progress, **config)
    print(deployment.rollout.summary() if not args.no_wait else deployment.rollout.describe())
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    version = _client().upload_model(args.path, model_id=args.model_id, app_id=args.app_id)
    same = " (same content as before: nothing new stored)" if version.deduplicated else ""
    print(f"uploaded {version.model_id} version {version.number} ({version.id}){same}")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    client = _client()
    if args.action == "list":
        emit(args, [m.to_dict() for m in client.list_models()])
    elif args.action == "get":
        model = _model(client, args.model)
        methods = {spec.name: {"signature": f"{spec.name}{spec.signature_text}",
                               "shape": spec.shape.replace("_", "-")} for spec in model.specs.values()}
        from .ids import model_name

        data = {"model": model_name(model.user_id or client.user_id, model.app_id, model.id),
                "version": model.version.number,
                "version_id": model.version.id, "methods": methods}
        emit(args, data, lambda: "\n".join(
            [f"{model!r}  version {model.version.number} ({model.version.id})",
             *(f"  {m['signature']}  [{m['shape']}]" for m in methods.values())]))
    elif args.action == "versions":
        emit(args, [v.to_dict() for v in _model(client, args.model).list_versions()])
    elif args.action == "export":
        print(f"exported to {_model(client, args.model).export(args.dest, args.version)}")
    elif args.action == "delete":
        _model(client, args.model).delete(args.version, force=args.force)
        print("deleted")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    client = _client()
    if args.action == "create":
        print(f"created compute cluster {client.create_compute_cluster(args.id, args.config).id}")
    elif args.action == "list":
        clusters = [c.to_dict() for c in client.list_compute_clusters()]
        emit(args, clusters, lambda: table([{**c, "nodes": _nodes_text(c)} for c in clusters],
                                           ["id", "cloud_provider", "region", "ray_address", "nodes", "description"]))
    elif args.action == "get":
        emit(args, client.compute_cluster(args.id).refresh().to_dict())
    elif args.action == "delete":
        client.delete_compute_clusters(args.ids)
        print(f"deleted {', '.join(args.ids)}")
    return 0


def _nodes_text(cluster: dict) -> str:
    """A cluster's nodes in a table cell: ``2 nodes: 4 CPU, 16.0 GiB; 2 CPU, 2 GPU [pool=gpu]``."""
    if cluster.get("error"):
        return f"(not answering: {cluster['error'][:80]})"
    nodes = cluster.get("nodes") or []
    parts = []
    for n in nodes:
        text = f"{n['cpus']:g} CPU, {n['memory'] / 2**30:.1f} GiB"
        if n["gpus"]:
            text += f", {len(n['gpus'])} GPU"
        if n["labels"]:
            text += " [" + ",".join(f"{k}={v}" for k, v in n["labels"].items()) + "]"
        parts.append(text)
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: " + "; ".join(parts)


def cmd_nodepool(args: argparse.Namespace) -> int:
    cluster = _client().compute_cluster(args.cluster)
    if args.action == "create":
        print(f"created nodepool {cluster.create_nodepool(args.id, args.config).id} in {args.cluster}")
    elif args.action == "list":
        emit(args, [n.to_dict() for n in cluster.list_nodepools()])
    elif args.action == "get":
        emit(args, cluster.nodepool(args.id).refresh().to_dict())
    elif args.action == "delete":
        cluster.delete_nodepools(args.ids)
        print(f"deleted {', '.join(args.ids)}")
    return 0


def cmd_deployment(args: argparse.Namespace) -> int:
    client = _client()
    if args.action == "create":
        config: dict = {}
        if args.model:
            config["worker"] = {"model": _model_config(args.model)}
        config.update(_scale_changes(args))
        nodepool = client.compute_cluster(args.cluster).nodepool(args.nodepool)
        deployment = nodepool.create_deployment(args.id, args.config, **config)
        if args.wait:
            deployment.wait_until_ready()
        print(f"deployment {deployment.id}: {deployment.state}")
    elif args.action == "list":
        emit(args, [d.to_dict() for d in client.list_deployments(args.cluster, args.nodepool)])
    elif args.action == "get":
        deployment = client.deployment(args.id)
        emit(args, {"config": deployment.config, "status": deployment.status,
                    "endpoints": deployment.describe()["endpoints"]})
    elif args.action == "update":
        changes = _scale_changes(args)
        print(f"deployment {args.id}: {client.deployment(args.id).update(args.config, **changes).state}")
    elif args.action in ("start", "stop"):
        print(f"deployment {args.id}: {getattr(client.deployment(args.id), args.action)().state}")
    elif args.action == "metrics":
        metrics = client.deployment(args.id).metrics()
        emit(args, metrics, lambda: "\n".join(f"{key}: {'-' if value is None else cell(key, value)}"
                                               for key, value in metrics.items()))
    elif args.action == "wait":
        print(f"deployment {args.id}: {client.deployment(args.id).wait_until_ready(args.timeout).state}")
    elif args.action == "delete":
        for deployment_id in args.ids:
            client.deployment(deployment_id).delete()
        print(f"deleted {', '.join(args.ids)}")
    return 0


def _replica_flags(parser: Any) -> None:
    parser.add_argument("--min-replicas", type=int,
                        help="autoscale_config.min_replicas (0: scale to zero when idle)")
    parser.add_argument("--max-replicas", type=int,
                        help="autoscale_config.max_replicas (default: the minimum)")


def _scale_changes(args: argparse.Namespace) -> dict:
    """``{"autoscale_config": ...}`` from --min-replicas/--max-replicas (empty when neither is given)."""
    scale = {k: v for k, v in (("min_replicas", args.min_replicas), ("max_replicas", args.max_replicas))
             if v is not None}
    return {"autoscale_config": scale} if scale else {}


def _model_config(address: str) -> dict:
    from .client._api import parse_model_url

    if "/" in address:
        user, app, model_id = parse_model_url(address)
        return {"id": model_id, "user_id": user, "app_id": app}
    return {"id": address}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # plain words are text: `predict echo hello` sends "hello"


def _by_type(node: Any, text: str) -> Any:
    """A command-line value read as its parameter's type asks: text stays text for a ``str``
    (``predict writer 123`` sends "123"), bytes are its UTF-8 unless written ``b'...'``, JSON
    parameters take JSON, the rest Python literals (else the text, for the call to refuse)."""
    if node.kind == "optional" and node.args:
        if text == "None":
            return None
        node = node.args[0]
    if node.kind == "str":
        return text
    if node.kind == "bytes":
        value = _literal(text)
        return value if isinstance(value, bytes) else text.encode()
    if node.kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return _literal(text)


def parse_call_args(spec: Any, texts: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """``VALUE ... name=VALUE ...`` from the command line as a method's arguments, each read by the
    type of the parameter it fills (positional values fill the parameters in order).

    Example: for ``predict(self, text: str, n: int = 3)``, ``["123", "n=2"]`` gives
    ``(["123"], {"n": 2})``.
    """
    params = {p.name: p for p in spec.params}
    positional_texts, named = [], {}
    for arg in texts:
        name, sep, value = arg.partition("=")
        if sep and name in params:  # else "a=b" is a value like any other
            if name in named:
                raise InputError(f"{name}= given twice")
            named[name] = value
        else:
            if named:
                raise InputError(f"the value {arg!r} comes after name=value arguments; put values first")
            positional_texts.append(arg)
    free = [p for p in spec.params if p.name not in named]
    positional = [_by_type(free[i].type, text) if i < len(free) else _literal(text)
                  for i, text in enumerate(positional_texts)]
    return positional, {name: _by_type(params[name].type, text) for name, text in named.items()}


def cmd_predict(args: argparse.Namespace) -> int:
    model = _model(_client(), args.model)
    method = model.methods.get(args.method)
    if method is None:
        raise InputError(f"{args.model} has no method {args.method!r} (methods: {', '.join(model.specs)})")
    positional, named = parse_call_args(model.specs[args.method], args.args)
    routing = {k: v for k, v in (("deployment_id", args.deployment_id), ("compute_cluster_id", args.cluster),
                                 ("nodepool_id", args.nodepool)) if v}
    result = method(*positional, **named, **routing)
    if model.specs[args.method].shape != "unary":
        for item in result:
            print(item, flush=True)
    else:
        print(result)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    deployment = _client().deployment(args.deployment)
    if not (args.access or args.inference):
        lines = deployment.logs(args.lines)
        if args.output != "table":
            emit(args, lines)
            return 0
        for line in lines:
            print(line)
        return 0
    import datetime

    since = datetime.timedelta(seconds=args.since) if args.since else None
    df = (deployment.inference_logs if args.inference else deployment.access_logs)(since=since, limit=args.lines)
    if args.output != "table":
        records = df.to_dict("records")
        for record in records:
            record["timestamp"] = record["timestamp"].isoformat()
        emit(args, records)
        return 0
    rows = []
    for record in df.to_dict("records"):
        record["timestamp"] = record["timestamp"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        record["latency_ms"] = f"{record['latency_ms']:.2f}"
        for key in ("inputs", "outputs"):
            if key in record:
                record[key] = _short(record[key])
        rows.append(record)
    print(table(rows, list(df.columns)))
    return 0


def _short(value: Any, width: int = 60) -> str:
    """A logged value on one line, cut to ``width`` characters."""
    if value is None:
        return "-"
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[:width - 1] + "…"


def cmd_secret(args: argparse.Namespace) -> int:
    client = _client()
    if args.action == "set":
        value = args.value if args.value is not None else _read_secret(args.name)
        client.set_secret(args.name, value)
        print(f"secret {args.name} set")
    elif args.action == "list":
        names = client.list_secrets()
        emit(args, names, lambda: "\n".join(names) if names else "(none)")
    elif args.action == "delete":
        client.delete_secret(args.name)
        print(f"deleted secret {args.name}")
    return 0


def _read_secret(name: str) -> str:
    """A secret's value from stdin (one trailing newline dropped), or asked for without echo."""
    import getpass
    import sys

    if sys.stdin is not None and not sys.stdin.isatty():
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    else:
        value = getpass.getpass(f"value of secret {name}: ")
    if not value:
        raise InputError(f"no value given for secret {name} (pipe it in, type it, or use --value)")
    return value
