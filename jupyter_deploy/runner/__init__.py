"""The runner: a process that loads one model folder and serves it over gRPC.

Start one with ``python -m jupyter_deploy.runner --model-path PATH --address
127.0.0.1:PORT``; call it with ``jupyter_deploy.RunnerClient``. Batching, the
transformer step and the inference log live here, next to the model.
"""

from ._host import CallFailed, ModelHost

__all__ = ["CallFailed", "ModelHost"]
