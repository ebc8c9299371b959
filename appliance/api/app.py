"""The Litestar application: routes, middleware, error handling, API docs,
and the lifespan that opens the runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Request, Response, Router
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

from appliance import __version__
from appliance.api.auth import ApiKeyMiddleware
from appliance.api.context import RequestContextMiddleware
from appliance.api.controllers.assistants import AssistantController
from appliance.api.controllers.audit import AuditController
from appliance.api.controllers.health import HealthController, MetricsController
from appliance.api.controllers.home import HomeController
from appliance.api.controllers.keys import KeyController
from appliance.api.controllers.knowledge import KnowledgeBaseController
from appliance.api.controllers.openai import OpenAIController
from appliance.api.controllers.runs import RunController, StatelessRunController
from appliance.api.controllers.tenants import TenantController
from appliance.api.controllers.threads import ThreadController
from appliance.api.controllers.tool_servers import ToolServerController
from appliance.api.dependencies import DEPENDENCIES
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.lane import TurnLaneMiddleware
from appliance.api.openapi import complete_description
from appliance.api.preflight import answer_options
from appliance.api.strict_body import check_body_types
from appliance.api.text_guard import TextGuardMiddleware
from appliance.collector import settle_after_startup
from appliance.knowledge.embeddings import Embedder
from appliance.llm.provider import LanguageModel
from appliance.runtime import open_runtime
from appliance.settings import Settings, load_settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def first_key_banner(key: str, path: Path, settings: Settings) -> str:
    url = f"http://{settings.host}:{settings.port}"
    return "\n".join(
        [
            "",
            "  An admin API key was created for this new appliance. It is shown only now:",
            "",
            f"      {key}",
            "",
            f"  It is also saved in {path} (readable by you only).",
            f"  API docs: {url}/docs    Try: appliance chat --url {url} --key-file {path}",
            "",
        ]
    )


def upload_limit(settings: Settings) -> int:
    """A document upload's body: the document plus room for the multipart framing."""
    return settings.max_document_bytes + 65_536


def openapi_config() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        path="/",
        js_url="/static/swagger/swagger-ui-bundle.js",
        css_url="/static/swagger/swagger-ui.css",
        standalone_preset_js_url="/static/swagger/swagger-ui-standalone-preset.js",
        favicon="<link rel='icon' type='image/png' href='/static/swagger/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="Offline AI agent appliance",
        version=__version__,
        path="/docs",
        render_plugins=[swagger],
        description="A private assistant with durable memory. Shaped like LangGraph's Agent Server.",
    )


async def before_request(request: Request) -> Response | None:
    return await answer_options(request) or await check_body_types(request)


def create_app(
    settings: Settings | None = None, *, model: LanguageModel | None = None, embedder: Embedder | None = None
) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_runtime(settings, model=model, embedder=embedder) as runtime:
            app.state.runtime = runtime
            if settings.profile == "embedded":
                key = await runtime.keys.bootstrap_admin(settings.admin_key_path)
                if key:
                    print(first_key_banner(key, settings.admin_key_path, settings), flush=True)
            settle_after_startup()
            log.info("appliance ready", extra={"profile": settings.profile, "model": runtime.model.name})
            yield

    static = create_static_files_router(
        path="/static", directories=[STATIC], opt={"exclude_from_auth": True}, include_in_schema=False
    )
    return Litestar(
        route_handlers=[
            HomeController,
            HealthController,
            MetricsController,
            ThreadController,
            AssistantController,
            RunController,
            StatelessRunController,
            KeyController,
            TenantController,
            AuditController,
            ToolServerController,
            OpenAIController,
            # Uploads may be larger than other requests.
            Router("/", route_handlers=[KnowledgeBaseController], request_max_body_size=upload_limit(settings)),
            static,
        ],
        lifespan=[lifespan],
        on_startup=[complete_description],
        before_request=before_request,
        dependencies=DEPENDENCIES,
        middleware=[
            RequestContextMiddleware,
            DefineMiddleware(ApiKeyMiddleware, exclude=["^/docs", "^/static"]),
            TurnLaneMiddleware,  # after the key: only a caller with a key waits in line
            TextGuardMiddleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=None,
    )
