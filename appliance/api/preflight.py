"""OPTIONS answers with every method the path has. Litestar 2 builds the
automatic OPTIONS handler before all of a path's handlers are registered,
so its Allow header misses some (litestar#4169, fixed only in Litestar 3)."""

from __future__ import annotations

from litestar import Request, Response
from litestar.routes import HTTPRoute


def allowed_methods(request: Request) -> list[str]:
    template = request.scope.get("path_template")
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            methods |= set(route.methods)
    return sorted(methods)


async def answer_options(request: Request) -> Response | None:
    """A before-request hook: the automatic OPTIONS handler, with the right Allow."""
    if request.method != "OPTIONS" or request.route_handler.handler_name != "options_handler":
        return None
    return Response(None, status_code=204, headers={"Allow": ", ".join(allowed_methods(request))})
