"""Text PostgreSQL cannot store never gets past the edge: a NUL character or a
lone UTF-16 surrogate in a JSON body or in the query string is a 400 naming
the field, before any handler runs, so nothing is half-written and no
database error can surface as a 500."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.api.openai_schemas import OPENAI_PREFIX, OpenAIError, OpenAIErrorBody
from appliance.api.schemas import ErrorBody

# An escape preceded by an even number of backslashes (so it is a real escape):
# \u0000, or a surrogate escape; pairs are told apart after decoding.
_SUSPECT = re.compile(rb"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _bad(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone UTF-16 surrogate (not valid Unicode)"
    return None


def find_bad_text(value: Any, where: str = "") -> tuple[str, str] | None:
    """The first string (key or value) that cannot be stored, and where it is."""
    if isinstance(value, str):
        problem = _bad(value)
        return (where or "body", problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if problem := _bad(str(key)):
                return (f"{where or 'body'} (a key)", problem)
            if found := find_bad_text(item, path):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := find_bad_text(item, f"{where}[{index}]"):
                return found
    return None


def _reject(path: str, field: str, problem: str) -> tuple[Message, Message]:
    detail = f"{field} {problem}; send text without it"
    if path.startswith(OPENAI_PREFIX):  # OpenAI's clients read their own error shape
        error = OpenAIError(message=detail, type="invalid_request_error", param=field, code="invalid_text")
        body = msgspec.json.encode(OpenAIErrorBody(error))
    else:
        body = msgspec.json.encode(ErrorBody(status_code=400, detail=detail, error="invalid_text"))
    start = {
        "type": "http.response.start",
        "status": 400,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class TextGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
            if problem := _bad(name) or _bad(value):
                for message in _reject(scope["path"], f"query parameter {name!r}", problem):
                    await send(message)
                return
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if b"json" not in content_type:
            await self.app(scope, receive, send)
            return
        # Read the JSON body (no further than the app's body limit), check it,
        # then hand it on unchanged.
        chunks: list[bytes] = []
        size, limit = 0, scope["app"].request_max_body_size or 1 << 30
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body") or size > limit:
                break  # over the limit: the app answers 413
        raw = b"".join(chunks)
        if size <= limit and _SUSPECT.search(raw):
            try:
                # The standard library's decoder, because it keeps a lone
                # surrogate (msgspec refuses it, saying only "truncated").
                found = find_bad_text(json.loads(raw))
            except ValueError:
                found = None  # malformed JSON: the app's own 400 says so
            if found:
                for message in _reject(scope["path"], *found):
                    await send(message)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
