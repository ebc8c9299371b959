"""Per-request context: a request id (taken from X-Request-ID or made up),
echoed in the response and in every log line, and the request's metrics."""

from __future__ import annotations

import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.observability.logs import request_id


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:64]
        rid = incoming or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                runtime = getattr(scope["app"].state, "runtime", None)
                if runtime is not None:
                    route = scope.get("path_template") or "unmatched"
                    runtime.metrics.observe_request(scope["method"], route, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
