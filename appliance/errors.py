"""The one base for errors a caller should be told about: each carries the
HTTP status, a short code and a message that says what to fix."""

from __future__ import annotations


class ApplianceError(Exception):
    status = 400
    code = "bad_request"
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
