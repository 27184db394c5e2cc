"""The Python client: what every front end (notebook, CLI, sidebar) calls."""

from ._api import Client, ComputeCluster, Deployment, Model, Nodepool, to_dataframe
from ._runner_client import RunnerClient

__all__ = ["Client", "ComputeCluster", "Deployment", "Model", "Nodepool", "RunnerClient", "to_dataframe"]
