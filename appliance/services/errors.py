"""Errors a service raises for the caller's input; the HTTP layer maps each
to a status code, the CLI to a message."""

from __future__ import annotations

from appliance.errors import ApplianceError


class ServiceError(ApplianceError):
    """The caller's request cannot be served as asked."""


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Invalid(ServiceError):
    status = 422
    code = "invalid_input"
