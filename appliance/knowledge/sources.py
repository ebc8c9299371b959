"""Passages as state and prompts hold them: plain data, numbered for citing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.knowledge.retrieval import Passage


def passage_dict(passage: Passage) -> dict[str, Any]:
    """A passage as state holds it (checkpoints need plain data)."""
    c = passage.chunk
    return {
        "chunk_id": c.chunk_id,
        "knowledge_base_id": str(c.knowledge_base_id),
        "document_id": str(c.document_id),
        "source": c.source,
        "title": c.title,
        "page": c.page,
        "heading": c.heading,
        "text": c.text,
        "score": round(passage.score, 6),
        "similarity": round(passage.similarity, 4),
    }


def locator(passage: dict[str, Any]) -> str:
    """Where a passage sits, as a reader would look it up: 'guide.pdf, page 2'."""
    parts = [passage["source"]]
    if passage.get("page") is not None:
        parts.append(f"page {passage['page']}")
    if passage.get("heading"):
        parts.append(f"section '{passage['heading']}'")
    return ", ".join(parts)


def format_sources(passages: Sequence[dict[str, Any]], start: int = 1) -> str:
    return "\n\n".join(f"[{n}] ({locator(p)})\n{p['text']}" for n, p in enumerate(passages, start=start))
