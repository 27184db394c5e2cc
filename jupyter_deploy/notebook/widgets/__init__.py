"""Notebook widgets, one a module: a coalescing stream view, a deployment card, a predict form.

- ``StreamView`` (``stream``): a stream shown in one display updated in place;
- ``DeploymentCard`` (``card``): a deployment's state, replicas and log tail, with actions;
- ``PredictForm`` (``form``): a form built from a method's signature.

None talks to the daemon except through the Deployment and Model objects::

    from jupyter_deploy.notebook.widgets import StreamView

    with StreamView() as view:
        view.consume(model.generate("Once upon a time"))
"""

from __future__ import annotations

from .card import DeploymentCard, deployment_card
from .form import PredictForm, predict_form
from .stream import StreamView

__all__ = ["DeploymentCard", "PredictForm", "StreamView", "deployment_card", "predict_form"]
