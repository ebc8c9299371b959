"""Hybrid retrieval: dense search in Chroma and full-text search in PostgreSQL,
fused by reciprocal rank fusion, with a relevance floor.

Dense search finds paraphrases; lexical search finds the exact names, options
and error codes that embeddings blur. RRF needs no score calibration between
the two: each list contributes 1 / (RRF_K + rank). The floor is on cosine
similarity to the question, measured for every candidate (also those only the
lexical search found), so a chunk that merely shares a common word is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.knowledge.embeddings import Embedder, cosine
from appliance.knowledge.expansion import expand
from appliance.store.knowledge import ChunkFilter, ChunkRecord, KnowledgeStore
from appliance.store.vectors import ChunkIndex

Mode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60


@dataclass(frozen=True)
class Passage:
    chunk: ChunkRecord
    score: float
    similarity: float


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
    ) -> list[Passage]:
        if not scope.knowledge_base_ids or not query.strip():
            return []
        floor = self.floor if floor is None else floor
        depth = max(4 * k, 20)
        [vector] = await self.embedder.aembed([query])
        nearest = await self.index.query(vector, chroma_where(scope), depth) if mode != "lexical" else []
        # One snapshot for both lists: a document replaced meanwhile shows one version, never parts of two.
        async with self.store.snapshot() as conn:
            # Only chunks PostgreSQL lists are live: this drops old generations and orphans.
            live = await self.store.chunks_by_id(conn, [i for i, _ in nearest], scope) if nearest else {}
            lexical = await self.store.lexical_search(conn, query, scope, depth) if mode != "dense" else []
        chunks = live | {c.chunk_id: c for c in lexical}
        similarity = {i: s for i, s in nearest if i in live}
        missing = [c.chunk_id for c in lexical if c.chunk_id not in similarity]
        similarity |= {i: cosine(vector, e) for i, e in (await self.index.embeddings(missing)).items()}

        # In a single mode the other list is empty and adds nothing.
        fused = reciprocal_rank_fusion([[i for i, _ in nearest if i in live], [c.chunk_id for c in lexical]])
        # Ties go by place in the corpus, not by the random ids, so rankings repeat.
        ranked = sorted(fused, key=lambda i: (-fused[i], chunks[i].source, chunks[i].chunk_index))
        passages = [
            Passage(chunks[i], fused[i], similarity.get(i, -1.0)) for i in ranked if similarity.get(i, -1.0) >= floor
        ]
        return passages[:k]

    async def expanded_query(self, question: str, scope: ChunkFilter) -> str:
        """A second query from the question's keywords and the knowledge bases' vocabulary."""
        keywords, vocabulary = await self.store.vocabulary(scope, question)
        return " ".join(expand(keywords, vocabulary)) or question
