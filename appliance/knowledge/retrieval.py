"""Hybrid retrieval: dense search in Chroma and full-text search in PostgreSQL,
fused by reciprocal rank fusion, with a relevance floor.

Dense search finds paraphrases; lexical search finds the exact names, options
and error codes that embeddings blur. RRF needs no score calibration between
the two: each list contributes 1 / (RRF_K + rank). The floor is on cosine
similarity to the question, measured for every candidate (also those only the
lexical search found), so a chunk that merely shares a common word is dropped.

Chroma unreachable (down, restarting, or slower than INDEX_TIMEOUT_S) does not
stop a search: it goes on from PostgreSQL's lexical index alone, the
similarities computed here from the chunks' text, and says so in ``degraded``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.knowledge.embeddings import Embedder, cosine, embedding_text
from appliance.knowledge.expansion import expand
from appliance.store.knowledge import ChunkFilter, ChunkRecord, KnowledgeStore
from appliance.store.vectors import ChunkIndex

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60
INDEX_TIMEOUT_S = 5.0
VECTORS_UNAVAILABLE = "the vector index (Chroma) is unavailable: results come from the lexical index alone"


@dataclass(frozen=True)
class Passage:
    chunk: ChunkRecord
    score: float
    similarity: float


@dataclass(frozen=True)
class Retrieved:
    passages: list[Passage]
    # Why the search was less than asked for (the vector index unavailable), or None.
    degraded: str | None = None


def chroma_where(scope: ChunkFilter) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = [{"knowledge_base_id": {"$in": [str(i) for i in scope.knowledge_base_ids]}}]
    if scope.document_ids:
        clauses.append({"document_id": {"$in": [str(i) for i in scope.document_ids]}})
    if scope.sources:
        clauses.append({"source": {"$in": list(scope.sources)}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


class Retriever:
    def __init__(self, store: KnowledgeStore, index: ChunkIndex, embedder: Embedder, *, floor: float) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.floor = floor

    async def search(
        self,
        query: str,
        scope: ChunkFilter,
        k: int,
        *,
        mode: Mode = "hybrid",
        floor: float | None = None,
    ) -> Retrieved:
        if not scope.knowledge_base_ids or not query.strip():
            return Retrieved([])
        floor = self.floor if floor is None else floor
        depth = max(4 * k, 20)
        [vector] = await self.embedder.aembed([query])
        nearest, degraded = [], None
        if mode != "lexical":
            try:
                nearest = await asyncio.wait_for(self.index.query(vector, chroma_where(scope), depth), INDEX_TIMEOUT_S)
            except Exception as exc:
                log.warning("dense search failed (%r); searching the lexical index alone", exc)
                degraded = VECTORS_UNAVAILABLE
        # One snapshot for both lists: a document replaced meanwhile shows one version, never parts of two.
        async with self.store.snapshot() as conn:
            # Only chunks PostgreSQL lists are live: this drops old generations and orphans.
            live = await self.store.chunks_by_id(conn, [i for i, _ in nearest], scope) if nearest else {}
            wants_lexical = mode != "dense" or degraded
            lexical = await self.store.lexical_search(conn, query, scope, depth) if wants_lexical else []
        chunks = live | {c.chunk_id: c for c in lexical}
        similarity = {i: s for i, s in nearest if i in live}
        missing = [c for c in lexical if c.chunk_id not in similarity]
        found, degraded = await self._similarities(vector, missing, degraded)
        similarity |= found

        # In a single mode the other list is empty and adds nothing.
        fused = reciprocal_rank_fusion([[i for i, _ in nearest if i in live], [c.chunk_id for c in lexical]])
        # Ties go by place in the corpus, not by the random ids, so rankings repeat.
        ranked = sorted(fused, key=lambda i: (-fused[i], chunks[i].source, chunks[i].chunk_index))
        passages = [
            Passage(chunks[i], fused[i], similarity.get(i, -1.0)) for i in ranked if similarity.get(i, -1.0) >= floor
        ]
        return Retrieved(passages[:k], degraded)

    async def _similarities(
        self, vector: list[float], chunks: list[ChunkRecord], degraded: str | None
    ) -> tuple[dict[str, float], str | None]:
        """Each chunk's similarity to the query: from its vector in Chroma, else embedded here
        (Chroma away, or a chunk published while it was away and not indexed yet)."""
        stored: dict[str, list[float]] = {}
        if chunks and degraded is None:
            try:
                stored = await asyncio.wait_for(self.index.embeddings([c.chunk_id for c in chunks]), INDEX_TIMEOUT_S)
            except Exception as exc:
                log.warning("reading vectors failed (%r); embedding the lexical results here", exc)
                degraded = VECTORS_UNAVAILABLE
        found = {i: cosine(vector, e) for i, e in stored.items()}
        missing = [c for c in chunks if c.chunk_id not in stored]
        if missing:
            embedded = await self.embedder.aembed([embedding_text(c.title, c.heading, c.text) for c in missing])
            found |= {c.chunk_id: cosine(vector, e) for c, e in zip(missing, embedded, strict=True)}
        return found, degraded

    async def expanded_query(self, question: str, scope: ChunkFilter) -> str:
        """A second query from the question's keywords and the knowledge bases' vocabulary."""
        keywords, vocabulary = await self.store.vocabulary(scope, question)
        return " ".join(expand(keywords, vocabulary)) or question
