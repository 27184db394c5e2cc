"""Errors of the control plane, each with the gRPC status a caller gets."""

from __future__ import annotations


class ControlError(Exception):
    """A refused or failed request; ``code`` is a grpc.StatusCode name."""

    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ControlError):
    code = "NOT_FOUND"


class AlreadyExists(ControlError):
    code = "ALREADY_EXISTS"


class InvalidArgument(ControlError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(ControlError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(ControlError):
    code = "PERMISSION_DENIED"


class Unauthenticated(ControlError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(ControlError):
    """A limit of ``home/limits.yaml`` (or the nodepool's capacity) refused the request."""

    code = "RESOURCE_EXHAUSTED"
