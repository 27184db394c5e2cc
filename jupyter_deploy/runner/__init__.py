"""The runner: a process that loads one model folder and serves it over gRPC.

Start one with ``python -m jupyter_deploy.runner --model-path PATH --address
127.0.0.1:PORT``; call it with ``jupyter_deploy.RunnerClient``. Batching, the
transformer step and the inference log live here, next to the model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CallFailed", "ModelHost"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the control plane imports the light ``_batcher`` settings
    # from here and should not pay for the codec and the model loader.
    if name in __all__:
        from . import _host

        return getattr(_host, name)
    raise AttributeError(f"module 'jupyter_deploy.runner' has no attribute {name!r}")
