"""Numbered sources in, cited answer out: pure functions, no model involved."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from appliance.knowledge.retrieval import Passage

_MARKER = re.compile(r"\[(\d{1,2})\]")


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


def format_sources(passages: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(f"[{n}] ({locator(p)})\n{p['text']}" for n, p in enumerate(passages, start=1))


def cite(answer: str, passages: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The answer with only valid [n] markers, and the citation for each.

    Markers that point at no source are removed. Small models often write a
    grounded answer without markers; since the answer was written from these
    sources alone, it then cites all of them at its end.
    """
    valid = range(1, len(passages) + 1)
    text = _MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in valid else "", answer).strip()
    cited = sorted({int(n) for n in _MARKER.findall(text)})
    if not cited and passages:
        cited = list(valid)
        text = f"{text} " + "".join(f"[{n}]" for n in cited)
    return text, [citation(n, passages[n - 1]) for n in cited]


def citation(index: int, passage: dict[str, Any]) -> dict[str, Any]:
    keys = ("document_id", "knowledge_base_id", "chunk_id", "source", "title", "page", "heading", "text")
    return {"index": index} | {k: passage.get(k) for k in keys}
