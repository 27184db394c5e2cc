"""The Python client: what every front end (notebook, CLI, sidebar) calls."""

import os as _os
import sys as _sys

# Before grpc loads (a process that loaded it already keeps its own settings): grpc's
# EventEngine client endpoints read on threads of their own and hand each reply over to the
# calling thread; iomgr's are read by the caller's own poll, one thread hop and futex wake-up
# less per call. Measured on the bench machine (bench/grpcpath_ab.py): client CPU per W1a call
# about 25-35 % less. The gateway does the same; a GRPC_EXPERIMENTS of the user's wins.
if "grpc" not in _sys.modules:
    _os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")

from ._api import Client, ComputeCluster, Deployment, Model, Nodepool, to_dataframe
from ._rollout import Readiness, Rollout, deployment_id_for
from ._runner_client import RunnerClient
from ._watch import Event

__all__ = ["Client", "ComputeCluster", "Deployment", "Event", "Model", "Nodepool", "Readiness", "Rollout",
           "RunnerClient", "deployment_id_for", "to_dataframe"]
