"""The exceptions users of jupyter_deploy see.

Every error says what was wrong and what to do. ``DeployError`` is the base of
them all, so ``except jupyter_deploy.DeployError`` catches anything of ours.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base class of every jupyter_deploy error."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing our own (client-side) stack:
        # the user gets one readable line, not gRPC internals.
        return [f"{type(self).__name__}: {self}"]


class ConfigError(DeployError, ValueError):
    """A config.yaml (or another config file) is invalid.

    ``errors`` holds one line per problem, each naming the file, the field path
    and what is wrong, e.g. ``config.yaml: model.id: bad id 'a b' ...``.
    """

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class ModelDefinitionError(DeployError, TypeError):
    """A ModelClass subclass or one of its methods cannot be served as written."""


class InputError(DeployError, TypeError):
    """A call's argument does not fit the method's signature.

    The message names the parameter, the expected type and what was given.
    """


class ModelError(DeployError):
    """The model raised while serving a call.

    Attributes:
        type: the model's exception class name, e.g. ``"KeyError"``.
        message: the exception's message.
        remote_traceback: the model's own frames, as text.
    """

    def __init__(self, type: str, message: str, remote_traceback: str = ""):
        self.type = type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type}: {message}" if message else type)

    def _render_traceback_(self) -> list[str]:
        lines = self.remote_traceback.rstrip().splitlines() if self.remote_traceback else []
        return [*lines, f"ModelError: {self}"]


class RunnerError(DeployError):
    """A runner could not be reached, refused a call, or broke a stream off.

    ``code`` is the gRPC status name (e.g. ``"UNAVAILABLE"``) when there is one.
    """

    def __init__(self, message: str, code: str = ""):
        self.code = code
        super().__init__(message)


class EnvironmentSetupError(DeployError):
    """A model's requirements could not be installed into its environment."""
