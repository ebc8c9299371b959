"""The production provider: Ollama, reached through langchain-ollama, on one
server or several (``ollama_pool``)."""

from __future__ import annotations

import asyncio

import httpx
from langchain_ollama import ChatOllama

from appliance.llm.errors import ModelNotFound, ModelUnavailable
from appliance.llm.ollama_pool import OllamaPool
from appliance.settings import Settings


def ollama_pool(settings: Settings) -> OllamaPool:
    return OllamaPool(
        settings.ollama_servers,
        model=str(settings.ollama_model),
        probe_s=settings.ollama_probe_s,
        connect_timeout_s=settings.ollama_connect_timeout_s,
    )


def chat_ollama(
    settings: Settings,
    pool: OllamaPool,
    *,
    max_tokens: int,
    schema: dict | str | None = None,
    temperature: float | None = None,
    model: str | None = None,
) -> ChatOllama:
    """A chat model (``model``, else the configured one) whose calls the pool
    spreads over the servers; with ``schema``, Ollama constrains the reply to
    that JSON schema ("json": any JSON) and decodes greedily."""
    timeout = httpx.Timeout(settings.ollama_timeout_s, connect=settings.ollama_connect_timeout_s)
    return ChatOllama(
        base_url=pool.base_url,
        model=model or settings.ollama_model,
        temperature=0 if schema else settings.temperature if temperature is None else temperature,
        num_predict=max_tokens,
        format=schema,
        keep_alive=settings.ollama_keep_alive,
        client_kwargs={"timeout": timeout, "trust_env": False},
        async_client_kwargs={"transport": pool},
    )


async def probe_ollama(pool: OllamaPool) -> str:
    """Ask every server whether it serves the model (taking it out or back);
    raise a ModelError whose message tells the user what to do when none does."""
    serving = await asyncio.gather(*(pool.probe(server) for server in pool.servers))
    if any(serving):
        if len(pool.servers) == 1:
            return f"Ollama at {pool.base_url} serves {pool.model}"
        return f"{sum(serving)} of {len(pool.servers)} Ollama servers serve {pool.model}"
    if all(s.error and s.error.startswith("does not have") for s in pool.servers):
        raise ModelNotFound(
            f"{_each(pool)}; load it from the offline bundle (see models/manifest.toml) or set "
            f"APPLIANCE_OLLAMA_MODEL to a model it has"
        )
    raise ModelUnavailable(_each(pool))


def _each(pool: OllamaPool) -> str:
    return "; ".join(f"the model server at {s.name} {s.error}" for s in pool.servers)


async def ollama_tags(url: str, connect_timeout_s: float) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=connect_timeout_s * 2, trust_env=False) as client:
        response = await client.get("/api/tags")
        response.raise_for_status()
        return list(response.json().get("models", []))
