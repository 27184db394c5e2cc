"""What ``%load_ext jupyter_deploy`` loads: the ``DeployMagics`` class and the extension's
entry points, and nothing of the magics' work.

Each magic's options (the ``@argument`` lines, and so its ``?`` help) are declared here; its
work (``run_deploy``, ``run_predict``, ``run_stream`` and their helpers) lives in
``jupyter_deploy.notebook.magics``, imported when a magic first runs. Loading the extension
then compiles and runs a small module, not the whole notebook layer; the magics' argument
parsers too are built on first use (``_ParsedOnFirstUse``). ``jupyter_deploy.notebook.magics``
re-exports everything here, so ``from jupyter_deploy.notebook.magics import DeployMagics`` is
the same class.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from contextvars import ContextVar
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
from traitlets import Float

__all__ = ["DeployMagics", "load_ipython_extension", "unload_ipython_extension"]

_MAGIC_NAMES = {"line": ("deploy", "predict", "stream"), "cell": ("deploy",)}


def _work() -> Any:
    """The module that does the magics' work (imported on the first magic run)."""
    from . import magics

    return magics


# ---------------------------------------------------------------- one grammar for every magic
# A magic's line is split by ``magics._split`` and parsed by the magic's ``magic_arguments``
# parser. Each argument's ``type`` reads its token in the notebook ($var, {expr}, a literal,
# text), in the namespaces of the cell being run (a ``magics._Namespace``), which
# ``magics.parse_line`` makes current.

_CELL_NAMESPACE: ContextVar[Any] = ContextVar("jupyter_deploy_cell_namespace")


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
        return _work().run_deploy(self, line, cell, local_ns)

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
        return _work().run_predict(self, line, local_ns)

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
        return _work().run_stream(self, line, local_ns)


# ---------------------------------------------------------------- extension entry points


_DEPLOYMENT = ("jupyter_deploy.client._api", "Deployment")


def _formatter(ip: Any) -> Any:
    return getattr(getattr(ip, "display_formatter", None), "mimebundle_formatter", None)


def load_ipython_extension(ip: Any) -> None:
    """Register the magics (``%load_ext jupyter_deploy``); no daemon is contacted here."""
    from ._formatters import register_formatters

    ip.register_magics(DeployMagics(ip))
    register_formatters(ip)  # results render by type (concepts as a table with bars, ...)
    formatter = _formatter(ip)
    if formatter is not None:  # a returned or displayed Deployment shows as its card
        formatter.for_type_by_name(*_DEPLOYMENT, _deployment_bundle)


def _deployment_bundle(deployment: Any) -> Any:
    return _work()._deployment_bundle(deployment)


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
    from ._formatters import unregister_formatters

    unregister_formatters(ip)
    formatter = _formatter(ip)
    if formatter is not None:
        formatter.pop(".".join(_DEPLOYMENT), None)
