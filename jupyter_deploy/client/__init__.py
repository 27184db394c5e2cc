"""The Python client: what every front end (notebook, CLI, sidebar) calls."""

from ._api import Client, ComputeCluster, Deployment, Model, Nodepool, to_dataframe
from ._rollout import Readiness, Rollout, deployment_id_for
from ._runner_client import RunnerClient
from ._watch import Event

__all__ = ["Client", "ComputeCluster", "Deployment", "Event", "Model", "Nodepool", "Readiness", "Rollout",
           "RunnerClient", "deployment_id_for", "to_dataframe"]
