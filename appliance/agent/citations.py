"""Numbered sources in, cited answer out: pure functions, no model involved."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from appliance.knowledge.text import Span

_MARKER = re.compile(r"\[(\d{1,2})\]")


def cite(
    answer: str, passages: Sequence[dict[str, Any]], support: Sequence[tuple[int, Span]] = ()
) -> tuple[str, list[dict[str, Any]]]:
    """The answer with only valid [n] markers, and the citation for each, with
    the spans of the passage that support it (``support``: source number and
    sentence). Markers that point at no source are removed."""
    valid = range(1, len(passages) + 1)
    text = _MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in valid else "", answer).strip()
    cited = sorted({int(n) for n in _MARKER.findall(text)} | {n for n, _ in support})
    return text, [with_spans(n, passages[n - 1], [s for m, s in support if m == n]) for n in cited]


def with_spans(index: int, passage: dict[str, Any], spans: Sequence[Span]) -> dict[str, Any]:
    """A citation: where the passage is, its text, and the character spans of it that support the answer."""
    keys = ("document_id", "knowledge_base_id", "chunk_id", "source", "title", "page", "heading", "text")
    unique = sorted({(s.start, s.end) for s in spans})
    return {"index": index} | {k: passage.get(k) for k in keys} | {"spans": [{"start": a, "end": b} for a, b in unique]}
