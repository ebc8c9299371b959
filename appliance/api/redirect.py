"""Plain HTTP beside HTTPS: every request is redirected to the same path over
HTTPS, and nothing else is served, so no key or question travels in clear text
(a client that sent one already is told to use HTTPS; nothing is read from it)."""

from __future__ import annotations

from urllib.parse import quote

from litestar.types import Receive, Scope, Send


def https_redirect(https_port: int):
    """An ASGI app answering 308 (method and body kept) towards ``https_port``."""
    suffix = "" if https_port == 443 else f":{https_port}"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # served with lifespan off: only requests arrive
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        # The name the client used, without its port; the server's own address if it sent none.
        name = host.rsplit(":", 1)[0] if host and not host.endswith("]") else host
        name = name or scope["server"][0]
        path = (scope.get("raw_path") or quote(scope["path"]).encode()).decode("latin-1")  # as the client sent it
        query = scope.get("query_string", b"").decode("latin-1")
        location = f"https://{name}{suffix}{path}" + (f"?{query}" if query else "")
        body = f"Use HTTPS: {location}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
