"""The web chat at ``/``: one page and its own assets (appliance/web), served
with a Content-Security-Policy that lets the page reach only this appliance."""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, MediaType, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

WEB = Path(__file__).resolve().parents[2] / "web"
ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
    # Vendored, pinned (web/vendor/SOURCE.txt): answers render as Markdown, sanitised.
    "marked.esm.js": "text/javascript",
    "purify.min.js": "text/javascript",
}
# Scripts, styles, images and connections: this origin only. No inline code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
WEB_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The assets change with the appliance's version; check on each load.
    "Cache-Control": "no-cache",
}


class HomeController(Controller):
    opt = {"exclude_from_auth": True}
    include_in_schema = False

    @get("/", media_type=MediaType.HTML)
    async def home(self) -> Response[bytes]:
        return Response((WEB / "index.html").read_bytes(), headers=WEB_HEADERS)

    @get("/web/{name:str}")
    async def asset(self, name: FromPath[str]) -> Response[bytes]:
        if name not in ASSETS:
            raise NotFoundException(f"no such file of the web chat: {name}")
        return Response((WEB / name).read_bytes(), media_type=ASSETS[name], headers=WEB_HEADERS)
