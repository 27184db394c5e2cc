"""Who may see and change what: the access rules, in one place.

A user sees and calls their own models and the models others marked public,
and may deploy any model they see on their own nodepools; only a model's owner
changes or deletes it. Clusters, nodepools and deployments belong to their
creator alone. What a caller may not see is NOT_FOUND (its existence is not
revealed); what they may see but not change is PERMISSION_DENIED.
"""

from __future__ import annotations

from ._errors import NotFound, PermissionDenied
from ._store import Store

#: The built-in user whose models a shared nodepool serves on demand.
PLATFORM = "platform"
#: The built-in admin: creates users, and installs the platform's models.
ADMIN = "local"


def _name(key: tuple[str, str, str]) -> str:
    return f"{key[0]}/{key[1]}/models/{key[2]}"


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
