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
import types
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
    output_can_be_silenced,
)
from IPython.core.magic_arguments import argument, construct_parser
from IPython.display import display
from traitlets import Float

from ..errors import DeployError, DeploymentError, IdError, ModelDefinitionError, ModelError
from ..ids import default_deployment_id

__all__ = ["DeployMagics", "load_ipython_extension", "unload_ipython_extension"]

#: Top-level keys of a model's config.yaml; anything else in a ``--config`` file is deployment config.
_MODEL_CONFIG_KEYS = frozenset({"model", "inference_compute_info", "checkpoints", "concepts", "build_info"})
#: Names a model.py may use without defining them: Python's builtins (not IPython's additions).
_BUILTINS = (frozenset(dir(builtins)) - {"display", "get_ipython", "__IPYTHON__"}) | {
    "exit", "quit", "__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__",
    "__builtins__", "__annotations__", "__dict__"}
_VAR = re.compile(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_MODEL_FRAME = re.compile(r'File "(?:[^"]*/)?1/model\.py", line (\d+)')
_MAGIC_NAMES = {"line": ("deploy", "predict", "stream"), "cell": ("deploy",)}


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

_CELL_NAMESPACE: ContextVar[_Namespace] = ContextVar("jupyter_deploy_cell_namespace")


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


def _text(token: str) -> str:
    """An option's text: ``$var`` / ``{expr}`` expanded (to str), quotes removed."""
    return _CELL_NAMESPACE.get().text(token)


def _int(token: str) -> int:
    return int(_text(token))


_int.__name__ = "int"  # argparse names the type in its message: "invalid int value: 'many'"


def _variable(option: str) -> Callable[[str], Any]:
    """``--bytes VAR`` / ``--input VAR``: the value of a name (or ``$name`` / ``{expr}``)."""
    def variable(token: str) -> Any:
        return _CELL_NAMESPACE.get().variable(token, option)

    return variable


def _expression(option: str) -> Callable[[str], Any]:
    """``--sample EXPR``: a Python expression (or ``$name`` / ``{expr}``) evaluated in the notebook."""
    def expression(token: str) -> Any:
        ns = _CELL_NAMESPACE.get()
        found, value = ns.reference(token)
        return value if found else ns.eval(token, f"{option} {token}")

    return expression


class _Typed:
    """A literal read from the line (``123``), with its text: a ``str`` parameter takes the text
    (``%predict writer 123`` sends "123"), any other the value (``_as_declared``)."""

    def __init__(self, value: Any, text: str):
        self.value, self.text = value, text


def _read_value(token: str) -> Any:
    ns = _CELL_NAMESPACE.get()
    found, value = ns.reference(token)
    if found:  # $var / {expr}: the notebook's value, as it is
        return value
    value = ns.value(token)
    return value if isinstance(value, str) else _Typed(value, token)


def _as_declared(param: Any, value: Any) -> Any:
    """A value for ``param`` (None: no such parameter): a literal's text where it takes text."""
    if not isinstance(value, _Typed):
        return value
    node = param.type if param is not None else None
    if node is not None and node.kind == "optional" and node.args and value.value is not None:
        node = node.args[0]
    return value.text if node is not None and node.kind == "str" else value.value


def _method_value(token: str) -> tuple[str | None, Any]:
    """A method's argument: ``(name, value)`` for ``name=value``, else ``(None, value)``."""
    name, sep, value = token.partition("=")
    if sep and name.isidentifier() and token[:1] not in "\"'{$[(":
        return name, _read_value(value)
    return None, _read_value(token)


def _variable_name(token: str) -> str:
    if not token.isidentifier():
        raise UsageError(f"-o takes a variable name, not {token!r}")
    return token


class _ParsedOnFirstUse:
    """A magic method whose ``magic_arguments`` parser is built on first use.

    IPython's ``@magic_arguments()`` builds the parser, and writes its usage text into the
    docstring, when the class is defined: for our three magics that was most of what
    ``%load_ext jupyter_deploy`` cost. Here ``parser`` and ``__doc__`` (what ``%deploy?``,
    ``help`` and ``lsmagic`` read) build both on first read; calls and the attributes IPython's
    decorators set (``needs_local_scope``, ...) pass through to the function.
    """

    def __init__(self, func: Any):
        self.__wrapped__ = func
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__

    def _parser(self) -> Any:
        func = self.__wrapped__
        parser = func.__dict__.get("parser")
        if parser is None:
            parser = func.parser = construct_parser(func)  # also sets func.__doc__ to the usage
        return parser

    parser = property(_parser)
    __doc__ = property(lambda self: (self._parser(), self.__wrapped__.__doc__)[1])  # type: ignore[assignment]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)


def _magic_arguments(func: Any) -> _ParsedOnFirstUse:
    """``@magic_arguments()`` (the magic's name is the function's), its parser built on first use."""
    if not getattr(func, "has_arguments", False):
        func.has_arguments = True
        func.decorators = []
    return _ParsedOnFirstUse(func)


def _arguments(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several ``@argument`` decorators as one, their arguments listed in the order given."""
    def apply(fn: Any) -> Any:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


def _call_arguments(*own: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``%predict``'s and ``%stream``'s arguments: the model, the method's values, ``own``
    (``--method`` and the magic's own options), media, routing and ``-o``."""
    return _arguments(
        argument("model_id", type=_text, help="the model: MODEL_ID, or USER/APP/models/MODEL_ID"),
        argument("args", nargs="*", metavar="ARG", type=_method_value,
                 help="a value for the method's first parameter, and/or name=value; values are "
                      "Python literals, $var or {expression} from the notebook, else plain text"),
        *own,
        argument("--url", default=None, metavar="U", type=_text,
                 help="fill the method's first media parameter by URL"),
        argument("--file", default=None, metavar="PATH", type=_text,
                 help="fill the method's first media parameter from a file"),
        argument("--bytes", default=None, metavar="VAR", type=_variable("--bytes"),
                 help="fill the method's first media parameter with the bytes in VAR"),
        argument("--deployment-id", default=None, type=_text, help="call this deployment"),
        argument("--cluster", default=None, type=_text,
                 help="call the deployment on this cluster (with --nodepool)"),
        argument("--nodepool", default=None, type=_text,
                 help="call the deployment on this nodepool (with --cluster)"),
        argument("-o", "--output", default=None, metavar="VAR", type=_variable_name,
                 help="also store the result in VAR"),
    )


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


# ---------------------------------------------------------------- the magics


@magics_class
class DeployMagics(Magics):
    """``%%deploy``, ``%predict`` and ``%stream`` (see each one's ``?`` for its options)."""

    wait_timeout = Float(600.0, config=True, help="Seconds %%deploy waits for the deployment to be ready.")
    progress_interval = Float(0.25, config=True,
                              help="Seconds between two updates of %%deploy's progress line.")

    def __init__(self, shell: Any = None, client: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self._client = client
        self._models: dict[tuple[str, str, str], Any] = {}

    # ------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        """The ``Client`` the magics use, made (and the daemon started) on first use."""
        if self._client is None:
            from ..client import Client

            self._client = Client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._models.clear()

    def _live(self) -> bool:
        return getattr(self.shell, "kernel", None) is not None

    def _store(self, name: str | None, value: Any) -> None:
        if name:
            self.shell.user_ns[name] = value

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

        key = self._model_key(address)
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

    # ------------------------------------------------------------ %%deploy

    @line_cell_magic
    @no_var_expand
    @needs_local_scope
    @output_can_be_silenced
    @_magic_arguments
    @argument("model_id", type=_text, help="the model's id (letters, digits, - and _)")
    @argument("--nodepool", default=None, type=_text,
              help="the nodepool to deploy on (default: local)")
    @argument("--cluster", default=None, type=_text,
              help="the nodepool's compute cluster (default: local)")
    @argument("--deployment-id", default=None, type=_text,
              help="the deployment's id (default: the model id)")
    @argument("--app-id", default=None, type=_text,
              help="the app that holds the model (default: default)")
    @argument("--config", default=None, metavar="FILE", type=_text,
              help="a config.yaml, or a deployment YAML, whose keys override the defaults")
    @argument("--requirements", default=None, metavar='"PKG PKG"', type=_text,
              help="the model's requirements.txt, as one quoted list")
    @argument("--min-replicas", type=_int, default=None,
              help="at least this many replicas (autoscale_config.min_replicas; 0: scale to zero when idle)")
    @argument("--max-replicas", type=_int, default=None,
              help="at most this many replicas (autoscale_config.max_replicas; default: --min-replicas)")
    @argument("--local", action="store_true",
              help="load and test in this kernel only (no upload); the model object is put in the "
                   "namespace under the class's name")
    @argument("--no-test", action="store_true",
              help="do not run the model's test() (in the kernel with --local, else on the first replica)")
    @argument("--reload", default="auto", choices=("auto", "never"), type=_text,
              help="auto (the default): when only method bodies changed since the running version, swap "
                   "the new code into the running replicas, keeping their loaded state (hot reload); "
                   "never: always start new replicas")
    @argument("--object", default=None, metavar="NAME", type=_variable("--object"),
              help="line form (%%deploy MODEL_ID --object NAME): package this trained object of the "
                   "notebook (a scikit-learn, XGBoost, LightGBM or PyTorch model, a transformers "
                   "pipeline) and deploy it")
    @argument("--sample", default=None, metavar="EXPR", type=_expression("--sample"),
              help="with --object: a few input rows (a DataFrame or an array; an expression such as "
                   "X_test.head()) whose columns and dtypes every call is checked against, and on which "
                   "the first replica must reproduce the notebook's predictions")
    @argument("-o", "--output", default=None, metavar="VAR", type=_variable_name,
              help="also store the Deployment (or, with --local, the local model) in VAR")
    def deploy(self, line: str, cell: str | None = None, local_ns: dict | None = None) -> Any:
        """Deploy the ModelClass subclass in the cell, or (line form) a trained object.

        ``%deploy MODEL_ID --object NAME [--sample EXPR]`` packages the notebook's
        variable NAME with ``jupyter_deploy.package`` and deploys the folder it wrote,
        as the cell form does (every other option works the same).

        Writes the model folder ($JUPYTER_DEPLOY_HOME/notebook_models/MODEL_ID),
        checks the cell without loading weights (syntax, names used but defined
        only in the notebook, then the class and its signatures in a subprocess),
        uploads a new version, creates the deployment on the nodepool or rolls out
        the new version on the existing one, waits until it is ready and returns
        the Deployment. The first replica runs load_model() and test(); a failing
        test fails the deploy with the test's error. Values may be $var or {expr}.

        Re-running the cell after changing only method bodies (not load_model, __init__,
        class attributes, imports, --requirements or --config) swaps the new code into the
        running replicas, which keep their loaded weights (hot reload; test() runs on the
        swapped code first, and a failure keeps the old code); the ready line says "hot
        reload", or why it was not one. --reload never starts new replicas instead.
        """
        args = parse_line(self.deploy, line, _Namespace(self.shell.user_ns, local_ns))
        if cell is None:
            if args.object is None:
                raise UsageError("%deploy (one %) deploys a trained object: %deploy MODEL_ID --object NAME "
                                 "[--sample EXPR]; for a model written in a cell, %%deploy is a cell magic: start "
                                 "the cell with %%deploy MODEL_ID and put its code (a ModelClass subclass) below")
            return self._deploy_object(args)
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
            return self._deploy_local(args, cell, model_part)
        return self._deploy(args, cell, model_part, deployment_part)

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

        config = self._config(args, default_config(args.model_id, user_id=user_id,
                                                   app_id=args.app_id or "default"), model_part, user_id)
        requirements = " ".join((args.requirements or "").replace(",", " ").split())
        folder = home() / "notebook_models" / args.model_id
        return write_model_folder(cell, folder, model_id=args.model_id, config=config,
                                  requirements=requirements.split())

    def _deploy_local(self, args: Any, cell: str | None, model_part: dict, folder: Path | None = None) -> Any:
        from ..folder import model_class_names, model_file
        from ..local import load_local

        if folder is None:
            folder = self._folder(args, cell, model_part, "local")
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
            path.write_text(notes + dump_config(self._config(args, yaml.safe_load(text), model_part, user_id)))
        if args.local:
            return self._deploy_local(args, None, model_part, folder)
        return self._deploy(args, None, model_part, deployment_part, folder)

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
            folder = self._folder(args, cell, model_part, client.user_id)
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
            self._models.pop(self._model_key(args.model_id), None)
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
        model = self._model(args.model_id, method)
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

    @line_magic
    @no_var_expand
    @needs_local_scope
    @output_can_be_silenced
    @_magic_arguments
    @_call_arguments(
        argument("--method", default="predict", type=_text,
                 help="the method to call (default: predict)"),
        argument("--form", action="store_true",
                 help="show a form built from the method's signature instead of calling it"),
    )
    def predict(self, line: str, local_ns: dict | None = None) -> Any:
        """Call a deployed model's method and return the decoded result.

        ``x = %predict echo hi`` assigns it; ``%predict echo text=$name`` takes a
        value from the notebook. A streaming method's output is consumed as
        %stream does. Without routing options the model's default deployment serves.
        """
        args = parse_line(self.predict, line, _Namespace(self.shell.user_ns, local_ns))
        method = args.method
        if args.form:
            from .widgets import predict_form

            return predict_form(self._model(args.model_id, method), method)
        _model, spec, call = self._call(args, method)
        result = self._consume(call(), spec) if spec.shape != "unary" else call()
        self._store(args.output, result)
        return result

    @line_magic
    @no_var_expand
    @needs_local_scope
    @output_can_be_silenced
    @_magic_arguments
    @_call_arguments(
        argument("--method", default=None, type=_text,
                 help="the method (default: generate; with --input: stream)"),
        argument("--input", default=None, metavar="VAR", type=_variable("--input"),
                 help="an iterable (a list, a generator) in VAR to stream in: calls a "
                      "stream-stream method"),
    )
    def stream(self, line: str, local_ns: dict | None = None) -> Any:
        """Call a streaming method and show its chunks as they come.

        Returns the joined text when the method yields str, else the list of
        items. Interrupting the kernel (the stop button) cancels the call on the
        server and keeps what was received. End the line with ; to show the
        chunks only.
        """
        args = parse_line(self.stream, line, _Namespace(self.shell.user_ns, local_ns))
        method = args.method or ("stream" if args.input is not None else "generate")
        _model, spec, call = self._call(args, method)
        if spec.shape == "unary":
            raise UsageError(f"{method}() is unary (it returns one value); call it with %predict")
        if spec.shape == "bidi" and args.input is None:
            raise UsageError(f"{method}() takes a stream of inputs: give it with --input VAR")
        result = self._consume(call(), spec)
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


# ---------------------------------------------------------------- extension entry points


def _deployment_bundle(deployment: Any) -> Any:
    """How a Deployment displays: its DeploymentCard when the widgets are available."""
    own = getattr(type(deployment), "_repr_mimebundle_", None)
    if own is not None:
        return deployment._repr_mimebundle_()
    card = _optional("jupyter_deploy.notebook.widgets", "DeploymentCard")
    if card is None:
        return None
    return card(deployment)._repr_mimebundle_()


_DEPLOYMENT = ("jupyter_deploy.client._api", "Deployment")


def _formatter(ip: Any) -> Any:
    return getattr(getattr(ip, "display_formatter", None), "mimebundle_formatter", None)


def load_ipython_extension(ip: Any) -> None:
    """Register the magics (``%load_ext jupyter_deploy``); no daemon is contacted here."""
    from .render import register_formatters

    ip.register_magics(DeployMagics(ip))
    register_formatters(ip)  # results render by type (concepts as a table with bars, ...)
    formatter = _formatter(ip)
    if formatter is not None:  # a returned or displayed Deployment shows as its card
        formatter.for_type_by_name(*_DEPLOYMENT, _deployment_bundle)


def unload_ipython_extension(ip: Any) -> None:
    """Remove the magics and close the client (``%unload_ext`` / ``%reload_ext``)."""
    manager = ip.magics_manager
    instance = manager.registry.pop(DeployMagics.__name__, None)
    for kind, names in _MAGIC_NAMES.items():
        for name in names:
            fn = manager.magics[kind].get(name)
            if fn is not None and isinstance(getattr(fn, "__self__", None), DeployMagics):
                del manager.magics[kind][name]
    if instance is not None:
        instance.close()
        if instance in getattr(ip, "configurables", []):
            ip.configurables.remove(instance)
    from .render import unregister_formatters

    unregister_formatters(ip)
    formatter = _formatter(ip)
    if formatter is not None:
        formatter.pop(".".join(_DEPLOYMENT), None)


def _check_replica_flags(min_replicas: int | None, max_replicas: int | None) -> None:
    """--min-replicas/--max-replicas checked as the control plane will check them, before any upload."""
    from .._autoscale import normalize

    given = {k: v for k, v in (("min_replicas", min_replicas), ("max_replicas", max_replicas)) if v is not None}
    problems = normalize(given)[1]
    if problems:
        raise UsageError("; ".join(f"--{field.replace('_', '-')} {problem}" for field, problem in problems))
