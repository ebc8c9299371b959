"""Every error leaves as JSON ``{"status_code", "detail", "error"}`` with a
message that says what to fix; under ``/v1/`` (the OpenAI-compatible API) in
OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, which
its clients read."""

from __future__ import annotations

import logging

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.api.openai_schemas import OPENAI_PREFIX, OpenAIError, OpenAIErrorBody
from appliance.api.schemas import ErrorBody
from appliance.errors import ApplianceError
from appliance.store.faults import RETRY_AFTER_S, causes, storage_fault

log = logging.getLogger(__name__)


def _error(
    request: Request,
    status: int,
    detail: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Response:
    body: ErrorBody | OpenAIErrorBody
    if request.url.path.startswith(OPENAI_PREFIX):
        code = "invalid_api_key" if status == 401 else code
        status = 400 if status == 422 else status  # OpenAI's status for a request it cannot take
        body = OpenAIErrorBody(OpenAIError(message=detail, type=openai_type(status), param=param, code=code))
    else:
        body = ErrorBody(status_code=status, detail=detail, error=code)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def appliance_error(request: Request, exc: ApplianceError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return _error(request, exc.status, exc.message, exc.code, headers, exc.param)


def validation_error(request: Request, exc: ValidationException) -> Response:
    problems, fields = [], []
    for item in exc.extra or []:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            problems.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
            if where and where != "body":
                fields.append(where)
        else:
            problems.append(str(item))
    detail = exc.detail if not problems else f"{exc.detail}: " + "; ".join(problems)
    # OpenAI's clients read the field at fault from ``param``.
    return _error(request, 400, detail, "invalid_request", param=fields[0] if fields else None)


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
    elif exc.status_code == 400 and any(isinstance(c, msgspec.DecodeError) for c in causes(exc)):
        detail = f"the request body is not valid JSON ({detail}); send a JSON object"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.method} {request.url.path} (ids are UUIDs; see /docs)"
    return _error(request, exc.status_code, detail, _CODES.get(exc.status_code), exc.headers)


def internal_error(request: Request, exc: Exception) -> Response:
    fault = storage_fault(exc)
    if fault == "unavailable":
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)})
        detail = "the database (PostgreSQL) is unavailable; try again in a few seconds"
        return _error(request, 503, detail, "database_unavailable", {"Retry-After": str(RETRY_AFTER_S)})
    if fault == "full":
        log.error("storage full", extra={"path": request.url.path, "error": str(exc)})
        detail = "the appliance's data disk is full; nothing was changed. An admin must free space"
        return _error(request, 507, detail, "insufficient_storage")
    log.exception("unhandled error", extra={"path": request.url.path})
    return _error(request, 500, "internal error; the appliance's log has the details", "internal_error")


EXCEPTION_HANDLERS = {
    ApplianceError: appliance_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}
