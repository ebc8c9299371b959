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
