"""Embeddings for clients (OpenAI's ``POST /v1/embeddings``): the appliance's
own MiniLM vectors, the very ones its knowledge bases are searched with."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from appliance.errors import Invalid, UnknownModel
from appliance.knowledge.embeddings import Embedder

MODEL_ID = "all-minilm-l6-v2"  # the model models/manifest.toml pins for embeddings
MAX_INPUTS = 2048  # texts per request, as OpenAI allows


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int  # word pieces the model read, all texts together


class EmbeddingService:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @property
    def dimensions(self) -> int:
        return self.embedder.dimensions

    async def embed(self, model: str, value: Any, dimensions: int | None = None) -> Embedded:
        if model != MODEL_ID:
            raise UnknownModel(f"the embedding model here is {MODEL_ID!r}, not {model!r}")
        if dimensions is not None and dimensions != self.dimensions:
            raise Invalid(f"dimensions: {MODEL_ID} has {self.dimensions} and cannot shorten them", param="dimensions")
        texts = texts_of(value)
        # One trip to the model's thread: the vectors, then the counts for usage.
        return await asyncio.to_thread(
            lambda: Embedded(self.embedder.embed(texts), sum(self.embedder.token_counts(texts)))
        )


def texts_of(value: Any) -> list[str]:
    """``input`` as OpenAI takes it: a string or a list of strings, none empty."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise Invalid("input must be a string or a non-empty list of strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise Invalid(f"input has {len(texts)} texts; send at most {MAX_INPUTS} a request", param="input")
    for i, text in enumerate(texts):
        where = "input" if isinstance(value, str) else f"input[{i}]"
        if isinstance(text, int | list):
            raise Invalid(
                f"{where}: token arrays are not supported (this model's tokenizer is not OpenAI's); send the text",
                param="input",
            )
        if not isinstance(text, str):
            raise Invalid(f"{where} must be a string", param="input")
        if not text:
            raise Invalid(f"{where} is empty; every text must have at least one character", param="input")
    return texts
