"""ControlPlane: the daemon's parts, wired together (the gRPC service calls into it)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .._tokens import DEFAULT_TTL, MAX_TTL, RouteKeys
from . import _auth, _limits
from ._backends import Backends
from ._blobs import BlobStore
from ._calllog import CallLog
from ._compute import Compute
from ._described import ServedDescriptions
from ._events import EventBus
from ._host_info import detect
from ._interpreters import Interpreters
from ._registry import Registry
from ._router import Router
from ._scheduler import Scheduler
from ._secrets import Secrets
from ._store import Store

log = logging.getLogger("jupyter_deploy.daemon")

#: Seconds a cached model environment may go unused before the daemon removes it.
ENV_MAX_IDLE = 7 * 86400


def _route_token_ttl() -> float:
    """Seconds route tokens live: ``JUPYTER_DEPLOY_ROUTE_TOKEN_TTL``, else ``DEFAULT_TTL``; at most
    ``MAX_TTL``, past which runners refuse them."""
    text = os.environ.get("JUPYTER_DEPLOY_ROUTE_TOKEN_TTL", "")
    try:
        ttl = float(text) if text else DEFAULT_TTL
    except ValueError:
        raise ValueError(f"JUPYTER_DEPLOY_ROUTE_TOKEN_TTL={text!r} is not a number of seconds") from None
    if not 0 < ttl <= MAX_TTL:
        used = MAX_TTL if ttl > MAX_TTL else DEFAULT_TTL
        log.warning("JUPYTER_DEPLOY_ROUTE_TOKEN_TTL=%s is outside (0, %g]: route tokens live %g s", text, MAX_TTL,
                    used)
        ttl = used
    return ttl


class ControlPlane:
    """Owns the state under ``home`` and the parts that act on it.

    Attributes:
        store: the SQLite state (``_store``)
        registry: model versions over content-addressed blobs (``_registry``, ``_blobs``)
        interpreters: the interpreters replicas may run with (``_interpreters``)
        compute: clusters, nodepools and deployments (``_compute``)
        backends: the nodepool backend of each compute cluster (``_backends``)
        scheduler: starts, supervises and routes to runner replicas on them (``_scheduler``)
        router: resolves a call to a runner and signs its route token (``_router``)
        events: committed state changes, pushed to watchers (``_events``)
        calls: access records and inference logs shipped by the runners (``_calllog``)
        shutdown_requested: set when a client asked the daemon to stop
    """

    def __init__(self, home: Path, address: str):
        self.home = Path(home)
        self.address = address
        self.store = Store(self.home / "state.db")
        self.events = EventBus(self.store)
        self.secret = _auth.server_secret(self.home)
        self.route_keys = RouteKeys(self.secret)  # route tokens' keys: derived, never stored
        _auth.ensure_local_user(self.store, self.home, self.secret)
        self.limits = _limits.load(self.home)  # the admin's per-user limits (a bad file stops the start)
        self.host = detect()
        self.interpreters = Interpreters(self.home, self.limits.allowed_interpreters)
        self.registry = Registry(self.store, BlobStore(self.home / "blobs"), self.home / "versions",
                                 interpreters=self.interpreters)
        # What a version's first replica describes replaces what its uploader said.
        self.served = ServedDescriptions(self.registry.served_description)
        # Each compute cluster's replicas run on the backend its cloud_provider names.
        self.backends = Backends(self.home, self.host)
        self.scheduler = Scheduler(self.store, self.host, self.home, self.registry.version_dir,
                                   backends=self.backends, route_keys=self.route_keys,
                                   on_ready=self.served.replica_ready, interpreters=self.interpreters)
        self.calls = CallLog(self.home, self.store)
        self.compute = Compute(self.store, self.host, self.registry, self.scheduler, self.calls, self.limits)
        self.router = Router(self.store, self.registry, self.scheduler, self.compute, self.route_keys,
                             ttl=_route_token_ttl())
        self.secrets = Secrets(self.home / "secrets")
        self.shutdown_requested = threading.Event()
        self.stop_runners_on_shutdown = True
        self.gateway_url = ""  # the HTTP gateway's, set by the daemon that starts one
        self.gateway_grpc_address = ""

    def start(self) -> None:
        """Clean up what a crash left, create the embedded defaults, bring deployments back."""
        self.registry.startup_cleanup()
        # Owners' copies of versions deleted meanwhile (the shared versions/ was cleaned just now).
        self.scheduler.sandboxes.prune({r["id"] for r in self.store.query("SELECT id FROM versions")})
        self.compute.ensure_defaults()
        self.scheduler.start()
        self.calls.start()
        self.gc_environments()

    def gc_environments(self) -> list[Path]:
        """Remove cached model environments no runner uses and nobody used lately.

        Only those in ``home/envs``: the environments in an owner's sandbox stay (its runners'
        OS user owns that folder, and root takes no locks on files such a user could swap).
        """
        from ..environment import gc_environments, recently_used

        envs = self.home / "envs"
        in_use = set()
        for row in self.store.query("SELECT pid FROM replicas WHERE pid IS NOT NULL"):
            try:  # a replica in a model's environment was exec'd as <envs>/<hash>/bin/python
                python = Path(Path(f"/proc/{row['pid']}/cmdline").read_bytes().split(b"\0")[0].decode())
            except (OSError, UnicodeDecodeError):
                continue
            if envs in python.parents:
                in_use.add(python.relative_to(envs).parts[0])
        return gc_environments(in_use | recently_used(ENV_MAX_IDLE))

    def used(self, user_id: str) -> dict[str, int]:
        """What ``user_id`` holds now of each counted limit (``_limits.usage``)."""
        return _limits.usage(self.store, user_id)

    def stop(self, stop_runners: bool = True, grace: float | None = None) -> None:
        """Stop the parts; runners get ``grace`` seconds between SIGTERM and SIGKILL (default: the
        scheduler's ``stop_timeout``)."""
        self.events.close()
        self.scheduler.stop(stop_runners, grace)
        self.calls.stop()  # after the runners: their last records are in the spool files, read next start
        self.store.close()
