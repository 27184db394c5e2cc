"""Who may see and change what: the access rules, in one place.

A user sees and calls their own models and the models others marked public,
and may deploy any model they see on their own nodepools; only a model's owner
changes or deletes it. Clusters, nodepools and deployments belong to their
creator alone. What a caller may not see is NOT_FOUND (its existence is not
revealed); what they may see but not change is PERMISSION_DENIED.

Every RPC of the ControlPlane service has a rule in ``RPC_RULES``, checked before
the RPC runs (``check_rpc``): ``ANY`` authenticated user (the RPC then checks each
resource it touches with the functions below), or ``admin(...)`` only. An RPC
without a rule fails the import of this module, so none can be added unguarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ids import model_name
from ..proto import control_pb2
from ._errors import NotFound, PermissionDenied
from ._store import Store

#: The built-in user whose models a shared nodepool serves on demand.
PLATFORM = "platform"
#: The built-in admin: creates users, and installs the platform's models.
ADMIN = "local"


@dataclass(frozen=True)
class Rule:
    """Who may call an RPC: anyone authenticated, or the admin alone (``what`` it then does)."""

    admin_only: bool
    what: str = ""


#: Any authenticated user; the RPC checks the resources it touches.
ANY = Rule(admin_only=False)


def admin(what: str) -> Rule:
    """The admin only; ``what`` completes "only the admin can ..." (e.g. "create users")."""
    return Rule(admin_only=True, what=what)


RPC_RULES: dict[str, Rule] = {
    "GetInfo": ANY,
    # It stops every user's replicas (stop_runners), so it is the admin's, who started the daemon.
    "Shutdown": admin("stop the daemon"),
    "GetLimits": ANY,  # the caller's own; another user's (user_id) is checked inside: admin only
    "UploadModel": ANY, "GetModel": ANY, "ListModels": ANY, "ListVersions": ANY,
    "GetVersion": ANY, "ExportVersion": ANY, "DeleteModel": ANY, "SetVisibility": ANY,
    "Create": ANY, "Get": ANY, "List": ANY, "Update": ANY, "Delete": ANY, "Act": ANY,
    "Logs": ANY, "CallLogs": ANY, "Metrics": ANY,
    "ResolveRoute": ANY,
    "Watch": ANY,  # every user's deployments (user_id "*") is checked inside: admin only
    "CreateUser": admin("create users"),
    "ListUsers": admin("list users"),
    "CreateToken": ANY, "ListTokens": ANY, "RevokeToken": ANY,  # the caller's own tokens
    "SetSecret": ANY, "ListSecrets": ANY, "DeleteSecret": ANY,  # the caller's own secrets
}

_RPCS = set(control_pb2.DESCRIPTOR.services_by_name["ControlPlane"].methods_by_name)
if _RPCS != RPC_RULES.keys():
    raise ImportError(f"RPC_RULES must name every ControlPlane RPC: missing "
                      f"{sorted(_RPCS - RPC_RULES.keys())}, unknown {sorted(RPC_RULES.keys() - _RPCS)}")


def check_rpc(rpc: str, caller: str) -> None:
    """Raise PermissionDenied unless ``RPC_RULES`` lets ``caller`` call ``rpc``."""
    rule = RPC_RULES[rpc]
    if rule.admin_only and caller != ADMIN:
        raise PermissionDenied(f"only the admin ({ADMIN}) can {rule.what}; you are {caller}")


def _name(key: tuple[str, str, str]) -> str:
    return model_name(*key)


def readable_model(store: Store, caller: str, key: tuple[str, str, str]) -> None:
    """Raise NotFound unless the model exists and is the caller's own, public, or the platform's."""
    row = store.one("SELECT visibility FROM models WHERE user_id = ? AND app_id = ? AND id = ?", key)
    if row is None or (key[0] not in (caller, PLATFORM) and row["visibility"] != "public"):
        raise NotFound(f"model {_name(key)} not found")


def owned_model(store: Store, caller: str, key: tuple[str, str, str]) -> None:
    """Raise NotFound if the caller cannot see the model, PermissionDenied if it is not theirs."""
    readable_model(store, caller, key)
    if key[0] != caller:
        raise PermissionDenied(f"model {_name(key)} belongs to {key[0]}; only its owner can change or delete it")


def own_resource(caller: str, owner: str, what: str) -> None:
    """Clusters, nodepools and deployments: only their creator sees them."""
    if owner and owner != caller:
        raise NotFound(f"{what} not found for user {owner!r}")


def own_logs(caller: str, owner: str, deployment_id: str) -> None:
    """Access and inference logs and metrics name callers and hold their inputs: the deployment's
    owner alone reads them (anyone else gets NotFound, as for the deployment itself)."""
    own_resource(caller, owner, f"deployment {deployment_id!r}")
