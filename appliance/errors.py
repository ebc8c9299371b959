"""The one base for errors a caller should be told about: each carries the
HTTP status, a short code and a message that says what to fix."""

from __future__ import annotations


class ApplianceError(Exception):
    status = 400
    code = "bad_request"
    retry_after: int | None = None
    param: str | None = None  # the request field at fault, when there is one

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


# The caller's input, as a service or the engine judges it; the HTTP layer maps each
# to its status code, the CLI to a message.


class ServiceError(ApplianceError):
    """The caller's request cannot be served as asked."""


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class UnknownModel(NotFound):
    """A model a client names that this appliance does not have (OpenAI's model_not_found)."""

    code = "model_not_found"
    param = "model"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Invalid(ServiceError):
    status = 422
    code = "invalid_input"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit  # the limit reached, by its name in the tenant's limits
        self.retry_after = retry_after
