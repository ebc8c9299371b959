"""The production provider: Ollama, reached through langchain-ollama."""

from __future__ import annotations

import httpx
from langchain_ollama import ChatOllama

from appliance.llm.errors import ModelError, ModelNotFound, ModelUnavailable, classify
from appliance.settings import Settings


def chat_ollama(
    settings: Settings,
    *,
    max_tokens: int,
    schema: dict | str | None = None,
    temperature: float | None = None,
    model: str | None = None,
) -> ChatOllama:
    """A chat model (``model``, else the configured one); with ``schema``, Ollama
    constrains the reply to that JSON schema ("json": any JSON) and decodes greedily."""
    timeout = httpx.Timeout(settings.ollama_timeout_s, connect=settings.ollama_connect_timeout_s)
    return ChatOllama(
        base_url=settings.ollama_url,
        model=model or settings.ollama_model,
        temperature=0 if schema else settings.temperature if temperature is None else temperature,
        num_predict=max_tokens,
        format=schema,
        keep_alive=settings.ollama_keep_alive,
        client_kwargs={"timeout": timeout, "trust_env": False},
    )


async def probe_ollama(settings: Settings) -> str:
    """Check that the server answers and has the model; raise a ModelError
    whose message tells the user what to do."""
    url = str(settings.ollama_url).rstrip("/")
    model = str(settings.ollama_model)
    timeout = httpx.Timeout(settings.ollama_connect_timeout_s * 2, connect=settings.ollama_connect_timeout_s)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout, trust_env=False) as client:
            response = await client.post("/api/show", json={"model": model})
    except Exception as exc:
        raise classify(exc, where=url, model=model) or ModelUnavailable(str(exc)) from exc
    if response.status_code == 404:
        raise ModelNotFound(
            f"Ollama at {url} does not have the model {model!r}; load it from the offline bundle "
            f"(see models/manifest.toml) or set APPLIANCE_OLLAMA_MODEL to a model it has"
        )
    if response.status_code != 200:
        raise ModelError(f"Ollama at {url} answered {response.status_code} to /api/show: {response.text[:200]}")
    return f"Ollama at {url} serves {model}"


async def ollama_tags(settings: Settings) -> list[dict]:
    url = str(settings.ollama_url).rstrip("/")
    async with httpx.AsyncClient(
        base_url=url, timeout=settings.ollama_connect_timeout_s * 2, trust_env=False
    ) as client:
        response = await client.get("/api/tags")
        response.raise_for_status()
        return list(response.json().get("models", []))
