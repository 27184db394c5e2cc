"""ControlPlane: the daemon's parts, wired together (the gRPC service calls into it)."""

from __future__ import annotations

import threading
from pathlib import Path

from ._store import Store


class ControlPlane:
    """Owns the state under ``home`` and the parts that act on it.

    Attributes (each built by its own module):
        store: the SQLite state (``_store.Store``)
        blobs, registry: content-addressed archives and model versions (``_blobs``, ``_registry``)
        scheduler: starts, supervises and routes to runner replicas (``_scheduler``)
        shutdown_requested: set when a client asked the daemon to stop
    """

    def __init__(self, home: Path, address: str):
        self.home = Path(home)
        self.address = address
        self.store = Store(self.home / "state.db")
        self.shutdown_requested = threading.Event()
        self.stop_runners_on_shutdown = True
