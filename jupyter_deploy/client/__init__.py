"""The Python client: what every front end (notebook, CLI, sidebar) calls."""

from ._runner_client import RunnerClient

__all__ = ["RunnerClient"]
