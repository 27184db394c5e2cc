"""The exceptions users of jupyter_deploy see.

Every error says what was wrong and what to do. ``DeployError`` is the base of
them all, so ``except jupyter_deploy.DeployError`` catches anything of ours.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base class of every jupyter_deploy error.

    Example::

        try:
            Client().deploy("models/echo")
        except DeployError as e:
            print(e)          # what was wrong, and what to do
    """

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing our own (client-side) stack:
        # the user gets one readable line, not gRPC internals.
        return [f"{type(self).__name__}: {self}"]


class ConfigError(DeployError, ValueError):
    """A config.yaml (or another config file) is invalid.

    ``errors`` holds one line per problem, each naming the file, the field path
    and what is wrong, e.g. ``config.yaml: model.id: bad id 'a b' ...``.

    Example::

        try:
            load_local("models/echo")
        except ConfigError as e:
            for line in e.errors:
                print(line)
    """

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class IdError(DeployError, ValueError):
    """An id breaks its rule (``jupyter_deploy.ids``); the message says the rule.

    e.g. ``bad user id '.dotted': use letters, digits, '-', '_' and '.'; start with a letter or digit``.
    """


class ModelDefinitionError(DeployError, TypeError):
    """A ModelClass subclass or one of its methods cannot be served as written.

    Example::

        class Bad(ModelClass):
            @ModelClass.method
            def predict(self, text):        # no annotations: ModelDefinitionError names the parameter
                return text
    """


class InputError(DeployError, TypeError):
    """A call's argument does not fit the method's signature.

    The message names the parameter, the expected type and what was given.

    Example::

        model.predict(text=3)   # InputError: predict(): text: expected str, got int 3
    """


class ModelError(DeployError):
    """The model raised while serving a call.

    Attributes:
        type: the model's exception class name, e.g. ``"KeyError"``.
        message: the exception's message.
        remote_traceback: the model's own frames, as text.

    Example::

        try:
            model.predict("boom")
        except ModelError as e:
            print(e.type, e.message)
            print(e.remote_traceback)
    """

    def __init__(self, type: str, message: str, remote_traceback: str = ""):
        self.type = type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type}: {message}" if message else type)

    def _render_traceback_(self) -> list[str]:
        lines = self.remote_traceback.rstrip().splitlines() if self.remote_traceback else []
        return [*lines, f"ModelError: {self}"]


class TransformerError(DeployError):
    """The deployment's transformer (``1/transformer.py``) raised in ``preprocess`` or ``postprocess``.

    The message names the transformer, the hook, the method and the exception;
    ``remote_traceback`` holds the transformer's own frames. The model did not
    fail (for a preprocess error it was not even called).

    Example::

        except TransformerError as e:
            print(e.message)        # names the transformer, the hook and the method
    """

    def __init__(self, message: str, remote_traceback: str = ""):
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(message)

    def _render_traceback_(self) -> list[str]:
        lines = self.remote_traceback.rstrip().splitlines() if self.remote_traceback else []
        return [*lines, f"TransformerError: {self}"]


class RunnerError(DeployError):
    """A runner could not be reached, refused a call, or broke a stream off.

    ``code`` is the gRPC status name (e.g. ``"UNAVAILABLE"``) when there is one.

    Example::

        except RunnerError as e:
            if e.code == "UNAVAILABLE":
                ...                 # the replica went away: the client resolves the route again
    """

    def __init__(self, message: str, code: str = ""):
        self.code = code
        super().__init__(message)


class EnvironmentSetupError(DeployError):
    """A model's requirements could not be installed into its environment."""


class ControlPlaneError(DeployError):
    """The control plane refused or failed a request.

    ``code`` is the gRPC status name: ``NOT_FOUND``, ``ALREADY_EXISTS``,
    ``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``, ``PERMISSION_DENIED``,
    ``UNAUTHENTICATED``, ...

    Example::

        except ControlPlaneError as e:
            if e.code == "PERMISSION_DENIED":
                print("ask the model's owner:", e)
    """

    def __init__(self, message: str, code: str = ""):
        self.code = code
        super().__init__(message)


class NotFoundError(ControlPlaneError, LookupError):
    """What was asked for does not exist (or is not visible to the caller).

    Example::

        try:
            Deployment("nope").refresh()
        except NotFoundError:
            ...
    """


class DeploymentError(DeployError):
    """A deployment failed or did not become ready in time.

    Attributes:
        state: the deployment's state when the error was raised.
        reason: why, as the control plane sees it.
        log_tail: the last lines of its replicas' logs (empty when ``model_error`` says why).
        model_error: the model's own exception when its code raised before the deployment
            first served (in ``load_model``, ``test``, or importing model.py), else None.
        failed_step: where it raised then: ``"load_model"``, ``"test"``, ``"import"``,
            ``"transformer"``; ``""`` otherwise.

    Example::

        try:
            Client().deploy("models/echo")
        except DeploymentError as e:
            if e.model_error is not None:
                print(e.failed_step, e.model_error.type, e.model_error.message)
                print(e.model_error.remote_traceback)
            print(e.state, e.reason)
    """

    def __init__(self, message: str, state: str = "", reason: str = "", log_tail: list[str] | None = None,
                 failure: dict | None = None):
        self.state, self.reason, self.log_tail = state, reason, list(log_tail or [])
        self.failure = dict(failure) if failure else None
        self.failed_step = self.failure.get("step", "") if self.failure else ""
        self.model_error = ModelError(self.failure.get("type", ""), self.failure.get("message", ""),
                                      self.failure.get("traceback", "")) if self.failure else None
        text = message + (f"\n  state: {state}" if state else "") + (f"\n  reason: {reason}" if reason else "")
        if self.log_tail:
            text += "\n  last log lines:\n" + "\n".join(f"    {line}" for line in self.log_tail)
        super().__init__(text)


def failure_reason(failure: dict) -> str:
    """A deployment's reason from its model's failure record: what raised where, then its frames.

    Example: ``load_model() failed: TypeError: expected str`` and the traceback's lines below.
    """
    step, kind, message = failure["step"], failure["type"], failure["message"]
    if step == "import":
        head = f"the model's code failed to import: {message}"
    elif step == "transformer":
        head = message
    else:
        head = f"{step}() failed: {kind}: {message}" if message else f"{step}() failed: {kind}"
    return head + (f"\n{failure['traceback'].rstrip()}" if failure["traceback"] else "")
