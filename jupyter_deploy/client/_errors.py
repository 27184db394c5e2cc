"""Control-plane RPC failures as the errors users catch."""

from __future__ import annotations

import grpc

from ..errors import ControlPlaneError, NotFoundError


def control_error(e: grpc.RpcError) -> ControlPlaneError:
    """A failed control-plane RPC as a ControlPlaneError (NotFoundError for NOT_FOUND), carrying
    the status name as ``code``."""
    code = e.code().name if e.code() else "UNKNOWN"
    cls = NotFoundError if code == "NOT_FOUND" else ControlPlaneError
    return cls(e.details() or code, code)
