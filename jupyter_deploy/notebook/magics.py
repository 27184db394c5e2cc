"""``%%deploy``, ``%predict`` and ``%stream``: the notebook's way into jupyter_deploy.

Load them with ``%load_ext jupyter_deploy``::

    %%deploy echo
    from jupyter_deploy import ModelClass

    class Echo(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> str:
            return "echo: " + text

    x = %predict echo hi                 # 'echo: hi'
    %predict echo text=$name             # a value from the notebook
    text = %stream echo "a b c"          # chunks render as they come

The magics only call the public client (``Client``, ``Nodepool``, ``Deployment``,
``Model``) and ``load_local``; the client is made on first use, so loading the
extension never contacts the daemon. Argument mistakes are ``UsageError``s (no
traceback); everything else that fails raises a ``DeployError`` whose rendered
traceback is short (the model's own frames for a ``ModelError``).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import symtable
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from ..errors import DeployError, DeploymentError, IdError, ModelDefinitionError, ModelError
from ..ids import default_deployment_id

# The magics class, its grammar and the entry points live in ``_extension`` (what %load_ext
# loads); they are names of this module too, as they were before it was split.
from ._extension import (  # noqa: F401 - re-exported
    _CELL_NAMESPACE,
    _MAGIC_NAMES,
    DeployMagics,
    _arguments,
    _call_arguments,
    _expression,
    _int,
    _magic_arguments,
    _method_value,
    _ParsedOnFirstUse,
    _read_value,
    _text,
    _Typed,
    _variable,
    _variable_name,
    load_ipython_extension,
    unload_ipython_extension,
)

__all__ = ["DeployMagics", "load_ipython_extension", "unload_ipython_extension"]

#: Top-level keys of a model's config.yaml; anything else in a ``--config`` file is deployment config.
_MODEL_CONFIG_KEYS = frozenset({"model", "inference_compute_info", "checkpoints", "concepts", "build_info"})
#: Names a model.py may use without defining them: Python's builtins (not IPython's additions).
_BUILTINS = (frozenset(dir(builtins)) - {"display", "get_ipython", "__IPYTHON__"}) | {
    "exit", "quit", "__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__",
    "__builtins__", "__annotations__", "__dict__"}
_VAR = re.compile(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_MODEL_FRAME = re.compile(r'File "(?:[^"]*/)?1/model\.py", line (\d+)')


# ---------------------------------------------------------------- small display helpers


class _Line:
    """One line of plain text that displays without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)


class _Progress:
    """A status line updated in place (throttled) in a kernel; printed on each change elsewhere."""

    def __init__(self, live: bool, interval: float):
        self.live = live
        self.interval = interval
        self._handle: Any = None
        self._shown = 0.0
        self._key: Any = None

    def show(self, text: str, key: Any = None, force: bool = False) -> None:
        if self.live:
            now = time.monotonic()
            if not force and self._handle is not None and now - self._shown < self.interval:
                return
            self._shown = now
            if self._handle is None:
                self._handle = display(_Line(text), display_id=True)
                if self._handle is None:  # no display machinery (not an initialised shell): print
                    self.live = False
            else:
                self._handle.update(_Line(text))
        elif force or key != self._key:
            print(text, flush=True)
        self._key = key


def _optional(module: str, name: str) -> Any:
    """``module.name`` when the other half of the notebook layer provides it, else None."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


# ---------------------------------------------------------------- parsing


def _split(line: str) -> list[str]:
    """Split a magic's line on blanks outside quotes and brackets, keeping the quotes.

    ``text="a b" {f(1, 2)} [1, 2]`` gives ``['text="a b"', '{f(1, 2)}', '[1, 2]']``, so
    each value can be read as a Python literal afterwards.
    """
    tokens: list[str] = []
    buf: list[str] = []
    depth, quote, i = 0, "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(line):
                buf.append(line[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch in "([{":
            depth += 1
            buf.append(ch)
        elif ch in ")]}":
            depth = max(0, depth - 1)
            buf.append(ch)
        elif ch.isspace() and depth == 0:
            if buf:
                tokens.append("".join(buf))
                buf = []
        else:
            buf.append(ch)
        i += 1
    if quote:
        raise UsageError(f"unterminated {quote} quote in: {line.strip()}")
    if depth:
        raise UsageError(f"unbalanced brackets in: {line.strip()}")
    if buf:
        tokens.append("".join(buf))
    return tokens


def _strip_silencing(line: str) -> str:
    # `%stream m x;` ends with the `;` that silences the result: it is not part of a value.
    stripped = line.rstrip()
    return stripped[:-1] if stripped.endswith(";") else line


def _unquote(token: str) -> str:
    """A quoted token's text (``"a b"`` -> ``a b``); other tokens as they are."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        try:
            value = ast.literal_eval(token)
        except (ValueError, SyntaxError):
            return token
        if isinstance(value, str):
            return value
    return token


class _Namespace:
    """Evaluates ``$var`` and ``{expr}`` in the notebook's namespaces."""

    def __init__(self, user_ns: dict, local_ns: dict | None):
        self.user_ns = user_ns
        self.local_ns = local_ns if local_ns is not None else user_ns

    def eval(self, expr: str, shown: str) -> Any:
        try:
            return eval(expr, self.user_ns, self.local_ns)
        except NameError as e:
            raise UsageError(f"{shown}: {e} in the notebook") from None
        except SyntaxError as e:
            raise UsageError(f"{shown}: not a Python expression ({e.msg})") from None
        except Exception as e:  # noqa: BLE001 - whatever the user's expression raised
            raise UsageError(f"{shown}: evaluating it raised {type(e).__name__}: {e}") from None

    def reference(self, token: str) -> tuple[bool, Any]:
        """``(True, value)`` when the token is exactly ``$name`` or ``{expr}``."""
        m = _VAR.fullmatch(token)
        if m:
            return True, self.eval(m.group(1), token)
        if len(token) >= 2 and token[0] == "{" and token[-1] == "}":
            return True, self.eval(token[1:-1].strip(), token)
        return False, None

    def value(self, token: str) -> Any:
        """A value: ``$var`` / ``{expr}`` from the notebook, else a Python literal, else the text."""
        found, value = self.reference(token)
        if found:
            return value
        try:
            return ast.literal_eval(token)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return token

    def text(self, token: str | None) -> str | None:
        """An option's text: ``$var`` / ``{expr}`` expanded (to str), quotes removed."""
        if token is None:
            return None
        found, value = self.reference(token)
        return str(value) if found else _unquote(token)

    def variable(self, token: str, option: str) -> Any:
        """``--bytes VAR`` / ``--input VAR``: a name (or ``$name`` / ``{expr}``) in the notebook."""
        found, value = self.reference(token)
        if found:
            return value
        if not token.isidentifier():
            raise UsageError(f"{option} takes a variable's name (or $name, or {{expression}}), "
                             f"not {token!r}")
        return self.eval(token, f"{option} {token}")


def _media(node: Any) -> bool:
    """Whether a parameter's type is one that --url / --file / --bytes can fill."""
    if node.kind == "optional":
        node = node.args[0]
    return node.kind in ("bytes", "image", "audio", "video")


# ---------------------------------------------------------------- one grammar for every magic
# A magic's line is split by ``_split`` and parsed by the magic's ``magic_arguments`` parser.
# Each argument's ``type`` reads its token in the notebook ($var, {expr}, a literal, text),
# in the namespaces of the cell being run, which ``parse_line`` makes current.


def parse_line(magic: Any, line: str, ns: _Namespace) -> argparse.Namespace:
    """``magic``'s arguments in ``line`` (options anywhere), their values read through ``ns``.

    Example::

        args = parse_line(self.predict, "echo text=$name --deployment-id echo", ns)
        args.args   # [("text", <the value of name>)]
    """
    tokens = _split(_strip_silencing(line))
    current = _CELL_NAMESPACE.set(ns)
    try:
        return magic.parser.parse_intermixed_args(tokens)
    finally:
        _CELL_NAMESPACE.reset(current)


def _as_declared(param: Any, value: Any) -> Any:
    """A value for ``param`` (None: no such parameter): a literal's text where it takes text."""
    if not isinstance(value, _Typed):
        return value
    node = param.type if param is not None else None
    if node is not None and node.kind == "optional" and node.args and value.value is not None:
        node = node.args[0]
    return value.text if node is not None and node.kind == "str" else value.value


# ---------------------------------------------------------------- checking a cell


def _cell_line(lineno: int) -> str:
    # The cell's first line is the `%%deploy ...` line itself: model.py line N is cell line N + 1.
    return f"cell line {lineno + 1} (model.py line {lineno})"


def check_cell_source(source: str, user_ns: dict | None = None) -> None:
    """Raise ``ModelDefinitionError`` for a syntax error or a name the cell uses but never defines.

    A deployed model runs its ``model.py`` alone: a name that exists only in the
    notebook (a helper, a constant, an import made in another cell) would be a
    ``NameError`` on the replica. Nothing is imported or run here.
    """
    try:
        tree = compile(source, "model.py", "exec", ast.PyCF_ONLY_AST)
        table = symtable.symtable(source, "model.py", "exec")
    except SyntaxError as e:
        where = _cell_line(e.lineno) if e.lineno else "the cell"
        text = f"\n    {e.text.rstrip()}" if e.text and e.text.strip() else ""
        caret = ""
        if text and e.offset:
            indent = len(e.text) - len(e.text.lstrip())
            caret = "\n    " + " " * max(0, e.offset - 1 - indent) + "^"
            text = f"\n    {e.text.strip()}"
        raise ModelDefinitionError(f"syntax error at {where}: {e.msg}{text}{caret}") from None
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
        return  # `from x import *`: what it defines cannot be known without importing x
    defined, used = set(), set()
    for name in table.get_symbols():
        if name.is_assigned() or name.is_imported() or name.is_namespace():
            defined.add(name.get_name())
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        for name in child.get_symbols():
            if name.is_declared_global() and name.is_assigned():
                defined.add(name.get_name())
            elif name.is_global() and name.is_referenced():
                used.add(name.get_name())
    used |= {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    missing = used - defined - _BUILTINS
    if not missing:
        return
    first: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in missing:
            first[node.id] = min(first.get(node.id, node.lineno), node.lineno)
    ordered = sorted(missing, key=lambda n: (first.get(n, 0), n))
    listed = ", ".join(f"{n} ({_cell_line(first[n])})" if n in first else n for n in ordered)
    in_notebook = [n for n in ordered if user_ns is not None and n in user_ns]
    if in_notebook and len(in_notebook) == len(ordered):
        raise ModelDefinitionError(
            f"the cell uses {listed}, defined only in the notebook: a deployed model runs its "
            "model.py alone, so import or define them in this cell")
    raise ModelDefinitionError(
        f"the cell uses {listed}, not defined or imported in the cell"
        + (f" ({', '.join(in_notebook)} exist only in the notebook)" if in_notebook else "")
        + ": a deployed model runs its model.py alone, so import or define them in this cell")


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: str) -> dict:
    from ..config import parse_yaml
    from ..errors import ConfigError

    try:
        data = parse_yaml(Path(path).expanduser().read_text(), path)
    except FileNotFoundError:
        raise UsageError(f"--config: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config: cannot read {path}: {e}") from None
    except ConfigError as e:
        raise UsageError(f"--config: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path}: expected a mapping at the top level")
    if set(data) == {"deployment"} and isinstance(data["deployment"], dict):
        data = data["deployment"]
    return data


def _model_error(e: Exception, folder: Path) -> ModelError:
    """A model's exception raised in the kernel, its traceback trimmed to the model's frames."""
    import traceback

    root = folder.resolve()
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve().is_relative_to(root)] or frames[-1:]
    text = "".join(traceback.format_list(own))
    return ModelError(type(e).__name__, str(e), f"Traceback (model frames):\n{text}{type(e).__name__}: {e}")


def _cell_frames(text: str, from_cell: bool) -> str:
    """Frames of model.py named as the user wrote them: with the cell's line where it was a cell."""
    if from_cell:
        return _MODEL_FRAME.sub(lambda m: f'File "model.py", line {m[1]} (cell line {int(m[1]) + 1})', text)
    return _MODEL_FRAME.sub(lambda m: f'File "model.py", line {m[1]}', text)


def _concise(e: DeployError, deployment_id: str, from_cell: bool = True) -> DeployError:
    """A failed deploy's error, short: what happened, why, and the model's own error.

    The model's error comes from the control plane as the runner recorded it (``e.failure``);
    only a replica that crashed without recording one leaves the logs to say why."""
    if not isinstance(e, DeploymentError):
        return e
    lines = [str(e).split("\n")[0]]
    if e.failure is not None:
        from ..errors import failure_reason

        why = _cell_frames(failure_reason(e.failure), from_cell).splitlines()
        lines += ["  " + line for line in why]
        lines.append(f"  (its logs: Deployment({deployment_id!r}).logs())")
        short = DeploymentError("\n".join(lines), failure=e.failure)
        short.state, short.reason, short.log_tail = e.state, e.reason, e.log_tail
        return short
    reason = e.reason.split(". Last log lines:")[0].strip()
    if reason:
        lines.append(f"  reason: {reason.splitlines()[0]}")
    log = [*e.reason.splitlines(), *e.log_tail]
    starts = [i for i, line in enumerate(log) if "failed:" in line and "jupyter_deploy runner" in line]
    if starts:
        block = [log[starts[-1]].split("jupyter_deploy runner: ", 1)[-1]]
        for line in log[starts[-1] + 1:]:
            if line.startswith(("---", "jupyter_deploy runner")):
                break
            block.append(line)
        lines += ["  " + _cell_frames(line, from_cell) for line in block]
    elif e.log_tail:
        lines += ["  last log lines:", *("    " + line for line in e.log_tail[-8:])]
    lines.append(f"  (all of it: Deployment({deployment_id!r}).logs())")
    short = DeploymentError("\n".join(lines))
    short.state, short.reason, short.log_tail = e.state, e.reason, e.log_tail
    return short


# ---------------------------------------------------------------- the magics' work
# Each magic of ``DeployMagics`` (in ``_extension``) runs its ``run_*`` function here, with
# the magics instance as ``self``.


def _model_key(self, address: str) -> tuple[str, str, str]:
    from ..client._api import parse_model_url

    if "/" in address:
        try:
            return parse_model_url(address)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return ("", "default", address)


def _model(self, address: str, method: str) -> Any:
    """The registry's view of a model (cached; reread when the method is not known)."""
    from ..client import Model

    key = _model_key(self, address)
    model = self._models.get(key)
    if model is None or method not in model.methods:
        user, app, model_id = key
        model = Model(model_id=model_id, user_id=user or None, app_id=app, client=self.client)
        self._models[key] = model
    if method not in model.methods:
        from ..ids import model_name

        name = model_name(key[0] or self.client.user_id, key[1], key[2])
        raise UsageError(f"model {name} has no method {method!r} "
                         f"(methods: {', '.join(model.specs) or 'none'})")
    return model


def run_deploy(self, line: str, cell: str | None = None, local_ns: dict | None = None) -> Any:
    args = parse_line(self.deploy, line, _Namespace(self.shell.user_ns, local_ns))
    if cell is None:
        if args.object is None:
            raise UsageError("%deploy (one %) deploys a trained object: %deploy MODEL_ID --object NAME "
                             "[--sample EXPR]; for a model written in a cell, %%deploy is a cell magic: start "
                             "the cell with %%deploy MODEL_ID and put its code (a ModelClass subclass) below")
        return _deploy_object(self, args)
    if args.object is not None or args.sample is not None:
        raise UsageError("--object and --sample are for the line form: %deploy MODEL_ID --object NAME; "
                         "%%deploy deploys the ModelClass in its cell")
    if not cell.strip():
        raise UsageError("%%deploy needs the model's code (a ModelClass subclass) in the cell")
    _check_replica_flags(args.min_replicas, args.max_replicas)
    check_cell_source(cell, self.shell.user_ns)
    file_config = _read_yaml(args.config) if args.config else {}
    model_part = {k: v for k, v in file_config.items() if k in _MODEL_CONFIG_KEYS}
    deployment_part = {k: v for k, v in file_config.items() if k not in _MODEL_CONFIG_KEYS}
    if args.local:
        return _deploy_local(self, args, cell, model_part)
    return _deploy(self, args, cell, model_part, deployment_part)


def _config(self, args: Any, base: dict, model_part: dict, user_id: str) -> dict:
    """``base`` with the --config file's model sections over it, and the ids the line gives."""
    config = _merge(base, model_part)
    ids = {"id": args.model_id, "user_id": user_id}
    if args.app_id:
        ids["app_id"] = args.app_id
    config["model"] = {**config.get("model", {}), **ids}
    return config


def _folder(self, args: Any, cell: str, model_part: dict, user_id: str) -> Path:
    from ..config import default_config
    from ..folder import write_model_folder
    from ..paths import home

    config = _config(self, args, default_config(args.model_id, user_id=user_id,
                                               app_id=args.app_id or "default"), model_part, user_id)
    requirements = " ".join((args.requirements or "").replace(",", " ").split())
    folder = home() / "notebook_models" / args.model_id
    return write_model_folder(cell, folder, model_id=args.model_id, config=config,
                              requirements=requirements.split())


def _deploy_local(self, args: Any, cell: str | None, model_part: dict, folder: Path | None = None) -> Any:
    from ..folder import model_class_names, model_file
    from ..local import load_local

    if folder is None:
        folder = _folder(self, args, cell, model_part, "local")
    try:
        model = load_local(folder, run_test=not args.no_test)
    except DeployError:
        raise
    except Exception as e:  # noqa: BLE001 - load_model() or test() raised: the model's own frames
        raise _model_error(e, folder) from None
    name = model_class_names(cell if cell is not None else model_file(folder).read_text())[0]
    self.shell.user_ns[name] = model
    self._store(args.output, model)
    has_test = getattr(type(model.model), "test", None) is not None
    tested = "" if args.no_test else (", test() passed" if has_test else ", no test() defined")
    print(f"{name}: loaded in this kernel{tested}; call {name}.{next(iter(model.specs), 'predict')}(...)")
    return model


def _deploy_object(self, args: Any) -> Any:
    """The line form: package ``--object``, then deploy (or, with --local, load) its folder."""
    import yaml

    from ..config import dump_config
    from ..packaging import package

    _check_replica_flags(args.min_replicas, args.max_replicas)
    file_config = _read_yaml(args.config) if args.config else {}
    model_part = {k: v for k, v in file_config.items() if k in _MODEL_CONFIG_KEYS}
    deployment_part = {k: v for k, v in file_config.items() if k not in _MODEL_CONFIG_KEYS}
    requirements = (args.requirements or "").replace(",", " ").split()
    try:
        folder = package(args.object, args.model_id, sample=args.sample, requirements=requirements)
    except (ValueError, FileExistsError) as e:
        if isinstance(e, DeployError):
            raise
        raise UsageError(str(e)) from None
    user_id = "local" if args.local else self.client.user_id
    if model_part or args.app_id or user_id != "local":
        # The config the line and --config give, over the one package() wrote (its notes kept).
        path = folder / "config.yaml"
        text = path.read_text()
        notes = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        path.write_text(notes + dump_config(_config(self, args, yaml.safe_load(text), model_part, user_id)))
    if args.local:
        return _deploy_local(self, args, None, model_part, folder)
    return _deploy(self, args, None, model_part, deployment_part, folder)


def _deploy(self, args: Any, cell: str | None, model_part: dict, deployment_part: dict,
            folder: Path | None = None) -> Any:
    progress = _Progress(self._live(), self.progress_interval)
    try:
        deployment_id = args.deployment_id or default_deployment_id(args.model_id, "--deployment-id")
    except IdError as e:
        raise UsageError(str(e)) from None
    progress.show(f"{args.model_id}: checking and uploading ...", "upload", force=True)
    client = self.client
    if folder is None:
        folder = _folder(self, args, cell, model_part, client.user_id)
    config = dict(deployment_part)
    scale = {k: v for k, v in (("min_replicas", args.min_replicas),
                               ("max_replicas", args.max_replicas)) if v is not None}
    if scale:
        config = _merge(config, {"autoscale_config": scale})
    config["run_test"] = not args.no_test

    def show(rollout: Any) -> None:
        r = rollout.readiness
        uploading = rollout.action == "upload"
        # Printed (outside a kernel) once per step; updated in place (throttled) in one.
        key = "upload" if uploading else None if r is None else (
            r.state, r.ready, r.current, r.reason, tuple(step for _, step, _ in getattr(r, "steps", ())))
        progress.show(rollout.describe(), key, force=r is None and not uploading)

    try:
        deployment = client.deploy(
            folder, args.model_id, deployment_id=deployment_id, app_id=args.app_id,
            nodepool_id=args.nodepool, compute_cluster_id=args.cluster, timeout=self.wait_timeout,
            progress=show, hot=None if args.reload == "auto" else False, **config)
    except DeploymentError as e:
        progress.show(f"{args.model_id}: deployment {deployment_id} failed (see below)", "failed",
                      force=True)
        raise _concise(e, deployment_id, from_cell=cell is not None) from None
    finally:
        self._models.pop(_model_key(self, args.model_id), None)
        self._models.pop((client.user_id, args.app_id or "default", args.model_id), None)
    progress.show(deployment.rollout.summary(), "ready", force=True)
    self._store(args.output, deployment)
    return deployment

# ------------------------------------------------------------ %predict / %stream


def _call(self, args: Any, method: str) -> tuple[Any, Any, Callable[[], Any]]:
    """The model, the method's spec, and a thunk that makes the call."""
    if bool(args.cluster) != bool(args.nodepool):
        raise UsageError("--cluster and --nodepool go together; give both")
    if args.deployment_id and args.cluster:
        raise UsageError("give --deployment-id, or --cluster with --nodepool, not both")
    media = [(flag, value) for flag, value in (("url", args.url), ("filepath", args.file),
                                                ("bytes", args.bytes)) if value is not None]
    if len(media) > 1:
        raise UsageError("give one of --url, --file and --bytes")
    routing = {k: v for k, v in (("deployment_id", args.deployment_id),
                                 ("compute_cluster_id", args.cluster),
                                 ("nodepool_id", args.nodepool)) if v}
    positional, named = [], {}
    for name, value in args.args:
        if name is not None:
            if name in named:
                raise UsageError(f"{name}= given twice")
            named[name] = value
        else:
            if named:
                raise UsageError(f"positional value {value!r} after name=value arguments")
            positional.append(value)
    model = _model(self, args.model_id, method)
    spec = model.specs[method]
    taken: list[str] = []  # parameters filled by an option: positional values fill the others
    stream_input = getattr(args, "input", None)
    if stream_input is not None:
        if spec.stream_param is None:
            raise UsageError(f"{method}() takes no input stream; --input is for stream-stream "
                             f"methods (those taking an Iterator), e.g. --method stream")
        named[spec.stream_param.name] = stream_input
        taken.append(spec.stream_param.name)
    by, value = None, None
    if media:
        flag, value = media[0]
        option = f"--{'file' if flag == 'filepath' else flag}"
        by = model.methods.get(f"{method}_by_{flag}")
        if by is None:
            raise UsageError(f"{method}() has no image, audio, video or bytes parameter to fill with {option}")
        media_param = next(p.name for p in spec.params if _media(p.type))
        if media_param in taken:
            raise UsageError(f"{option} and --input both fill {media_param}; give one")
        taken.append(media_param)
    if taken:
        rest = [p.name for p in spec.params if p.name not in taken and p.name not in named]
        if len(positional) > len(rest):
            raise UsageError(f"too many values for {method}(): besides {', '.join(taken)} it takes "
                             f"{', '.join(rest) or 'nothing'}")
        named.update(zip(rest, positional))
        positional = []
    params = {p.name: p for p in spec.params}
    free = [p for p in spec.params if p.name not in named]
    positional = [_as_declared(free[i] if i < len(free) else None, v) for i, v in enumerate(positional)]
    named = {k: _as_declared(params.get(k), v) for k, v in named.items()}
    if by is not None:
        return model, spec, lambda: by(value, **named, **routing)
    fn = model.methods[method]
    return model, spec, lambda: fn(*positional, **named, **routing)


def run_predict(self, line: str, local_ns: dict | None = None) -> Any:
    args = parse_line(self.predict, line, _Namespace(self.shell.user_ns, local_ns))
    method = args.method
    if args.form:
        from .widgets import predict_form

        return predict_form(_model(self, args.model_id, method), method)
    _, spec, call = _call(self, args, method)
    result = _consume(self, call(), spec) if spec.shape != "unary" else call()
    self._store(args.output, result)
    return result


def run_stream(self, line: str, local_ns: dict | None = None) -> Any:
    args = parse_line(self.stream, line, _Namespace(self.shell.user_ns, local_ns))
    method = args.method or ("stream" if args.input is not None else "generate")
    _, spec, call = _call(self, args, method)
    if spec.shape == "unary":
        raise UsageError(f"{method}() is unary (it returns one value); call it with %predict")
    if spec.shape == "bidi" and args.input is None:
        raise UsageError(f"{method}() takes a stream of inputs: give it with --input VAR")
    result = _consume(self, call(), spec)
    self._store(args.output, result)
    return result


def _consume(self, items: Iterator[Any], spec: Any) -> Any:
    """Read a stream to its end (or to an interrupt), showing each item; the joined result."""
    view_cls = _optional("jupyter_deploy.notebook.widgets", "StreamView")
    view = view_cls() if view_cls is not None else None
    text = spec.returns.kind == "str"
    received: list[Any] = []
    wrote = False
    interrupted = False
    progress = _Progress(self._live(), 0.25) if view is None and not text else None
    started = time.monotonic()
    try:
        if view is not None:
            view.consume(items)  # keeps every item: ``received`` is its list, below
        else:
            for item in items:
                received.append(item)
                if isinstance(item, str):
                    sys.stdout.write(item)
                    wrote = True
                elif progress is not None and progress.live:
                    rate = len(received) / max(1e-9, time.monotonic() - started)
                    progress.show(f"{len(received)} items ({rate:.1f}/s)")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # cancels the call on the server (the model's generator is closed)
        if view is not None:
            view.close()
            received = view.items
    if wrote:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if interrupted:
        print(f"(interrupted after {len(received)} item{'s' if len(received) != 1 else ''}; the call "
              "was cancelled; what was received is kept)", file=sys.stderr, flush=True)
    if text:
        return StreamedText("".join(str(i) for i in received))._made_here()
    return StreamedItems(received)._made_here()


class _ShownLive:
    """A result already shown as it streamed: not shown again by the cell that made it.

    Shown normally anywhere else (``text`` evaluated in a later cell), so the value
    still behaves as the plain ``str`` or ``list`` it is.
    """

    _cell: int | None = None

    def _made_here(self) -> "_ShownLive":
        from IPython import get_ipython

        shell = get_ipython()
        self._cell = shell.execution_count if shell is not None else None
        return self

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is not None and shell.execution_count == self._cell:
            return
        display(self.__class__.__mro__[2](self))  # the plain str or list


class StreamedText(_ShownLive, str):
    """What ``%stream`` returns for text."""


class StreamedItems(_ShownLive, list):
    """What ``%stream`` returns for other items."""


# ---------------------------------------------------------------- how a Deployment displays


def _deployment_bundle(deployment: Any) -> Any:
    """How a Deployment displays: its DeploymentCard when the widgets are available."""
    own = getattr(type(deployment), "_repr_mimebundle_", None)
    if own is not None:
        return deployment._repr_mimebundle_()
    card = _optional("jupyter_deploy.notebook.widgets", "DeploymentCard")
    if card is None:
        return None
    return card(deployment)._repr_mimebundle_()


def _check_replica_flags(min_replicas: int | None, max_replicas: int | None) -> None:
    """--min-replicas/--max-replicas checked as the control plane will check them, before any upload."""
    from .._autoscale import normalize

    given = {k: v for k, v in (("min_replicas", min_replicas), ("max_replicas", max_replicas)) if v is not None}
    problems = normalize(given)[1]
    if problems:
        raise UsageError("; ".join(f"--{field.replace('_', '-')} {problem}" for field, problem in problems))
