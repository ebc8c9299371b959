"""Every error leaves as JSON ``{"status_code", "detail", "error"}`` with a
message that says what to fix."""

from __future__ import annotations

import logging

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.api.schemas import ErrorBody
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)


def _error(status: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response(
        ErrorBody(status_code=status, detail=detail, error=code),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def appliance_error(_: Request, exc: ApplianceError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return _error(exc.status, exc.message, exc.code, headers)


def validation_error(_: Request, exc: ValidationException) -> Response:
    problems = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            problems.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
        else:
            problems.append(str(item))
    detail = exc.detail if not problems else f"{exc.detail}: " + "; ".join(problems)
    return _error(400, detail, "invalid_request")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail
    if exc.status_code == 413:
        limit = request.app.request_max_body_size
        detail = f"the request body is over the {limit} bytes this appliance accepts (APPLIANCE_MAX_BODY_BYTES)"
    elif exc.status_code == 400 and _caused_by(exc, msgspec.DecodeError):
        detail = f"the request body is not valid JSON ({detail}); send a JSON object"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.method} {request.url.path} (ids are UUIDs; see /docs)"
    return _error(exc.status_code, detail, _CODES.get(exc.status_code), exc.headers)


def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return _error(500, "internal error; the appliance's log has the details", "internal_error")


EXCEPTION_HANDLERS = {
    ApplianceError: appliance_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}
