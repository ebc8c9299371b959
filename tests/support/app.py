"""The appliance served over real HTTP (uvicorn on a free loopback port) in
the test's event loop, so tests can inject a scripted model and still see
real streaming."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from appliance.api.app import create_app
from appliance.knowledge.embeddings import Embedder, load_embedder
from appliance.llm.provider import LanguageModel
from appliance.runtime import Runtime
from appliance.settings import Settings, load_settings
from appliance.store.audit import Actor
from tests.support.process import appliance_env
from tests.support.services import free_port


def make_settings(data_dir: Path, database_url: str, chroma_url: str | None = None, **extra: str) -> Settings:
    return load_settings(env=appliance_env(data_dir, database_url, chroma_url, **{"log_level": "warning", **extra}))


def ollama_settings(data_dir: Path, database_url: str, chroma_url: str, ollama_url: str, **extra: str) -> Settings:
    """The production model path: langchain-ollama against (the fake) Ollama at ``ollama_url``."""
    from tests.support.fake_ollama import MODEL

    return make_settings(
        data_dir, database_url, chroma_url, llm_provider="ollama", ollama_url=ollama_url, ollama_model=MODEL, **extra
    )


@dataclass
class Served:
    url: str
    client: httpx.AsyncClient  # carries the admin key
    runtime: Runtime
    admin_key: str

    def as_key(self, key: str | None) -> httpx.AsyncClient:
        headers = {"x-api-key": key} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, trust_env=False)

    async def tenant_client(self, tenant: str) -> httpx.AsyncClient:
        _, secret = await self.runtime.keys.create(tenant, actor=Actor.host())
        return self.as_key(secret)


@functools.cache
def shared_embedder() -> Embedder:
    """One loaded embedding model for every app a test session starts."""
    return load_embedder(load_settings(env={}))


@asynccontextmanager
async def serve_app(settings: Settings, model: LanguageModel | None = None) -> AsyncIterator[Served]:
    app = create_app(settings, model=model, embedder=shared_embedder())
    port = free_port()
    # As `appliance serve` stops: a stream still open after 10 s is cut, so that a
    # test's server never waits on a client that went away (a fuzzer's timed-out call).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the appliance exited during start-up")
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    admin_key = settings.admin_key_path.read_text().strip()
    served = Served(url=url, client=None, runtime=app.state.runtime, admin_key=admin_key)  # type: ignore[arg-type]
    served.client = served.as_key(admin_key)
    try:
        yield served
    finally:
        await served.client.aclose()
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_scripted(
    data_dir: Path,
    database_url: str,
    chroma_url: str,
    *,
    delay: float = 0.01,
    reply=None,
    capabilities: frozenset[str] | None = None,
    **extra: str,
) -> AsyncIterator[Served]:
    """The appliance with a scripted model (``served.chat``) that waits ``delay``
    seconds a word and answers with ``reply`` (default: the scripted model's own),
    trusted with ``capabilities`` (default: every role)."""
    from tests.support.scripted_model import EVERY_ROLE, ScriptedChatModel, scripted_language_model

    chat = ScriptedChatModel(delay=delay, reply=reply) if reply else ScriptedChatModel(delay=delay)
    settings = make_settings(data_dir, database_url, chroma_url, **extra)
    model = scripted_language_model(chat, capabilities=capabilities or EVERY_ROLE)
    async with serve_app(settings, model) as served:
        served.chat = chat  # type: ignore[attr-defined]
        yield served


@contextmanager
def model_delay(served: Served, seconds: float) -> Iterator[None]:
    """The scripted model waits ``seconds`` a word for the duration."""
    before = served.chat.delay  # type: ignore[attr-defined]
    served.chat.delay = seconds  # type: ignore[attr-defined]
    try:
        yield
    finally:
        served.chat.delay = before  # type: ignore[attr-defined]
