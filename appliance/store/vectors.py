"""ChromaDB: a server in production, an embedded PersistentClient otherwise.

The appliance always passes its own embeddings; Chroma's default embedding
function would try to download a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from appliance.settings import Settings


def open_chroma(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    path = settings.data_path / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class ChunkIndex:
    """The dense index of every knowledge base's chunks, in one Chroma collection.

    Chroma's client is synchronous, so every call runs in a worker thread. The
    index is only ever asked for candidates: PostgreSQL decides which are live.
    """

    def __init__(self, client: Any, collection: str) -> None:
        # embedding_function=None: never let Chroma embed (its default downloads a model).
        self.collection = client.get_or_create_collection(
            collection, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        self.max_batch = getattr(client, "get_max_batch_size", lambda: 5000)()

    async def count(self) -> int:
        return await asyncio.to_thread(self.collection.count)

    def upsert_blocking(self, ids: list[str], embeddings: list[list[float]], metadatas: list[dict[str, Any]]) -> None:
        """In batches Chroma accepts; blocks (async code calls ``add``)."""
        for i in range(0, len(ids), self.max_batch):
            end = i + self.max_batch
            self.collection.upsert(ids=ids[i:end], embeddings=embeddings[i:end], metadatas=metadatas[i:end])

    def pages(self, include: list[str], page: int = 10_000) -> Iterator[dict[str, Any]]:
        """The whole collection, ``page`` entries at a time; blocks."""
        offset = 0
        while True:
            batch = self.collection.get(include=include, limit=page, offset=offset)
            yield batch
            if len(batch["ids"]) < page:
                return
            offset += page

    async def add(self, ids: list[str], embeddings: list[list[float]], metadatas: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.upsert_blocking, ids, embeddings, metadatas)

    async def query(self, embedding: list[float], where: dict[str, Any], n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``n`` nearest chunks."""
        result = await asyncio.to_thread(
            self.collection.query, query_embeddings=[embedding], n_results=n, where=where, include=["distances"]
        )
        return [(i, 1.0 - d) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    async def embeddings(self, ids: list[str]) -> dict[str, list[float]]:
        if not ids:
            return {}
        result = await asyncio.to_thread(self.collection.get, ids=ids, include=["embeddings"])
        return {i: list(e) for i, e in zip(result["ids"], result["embeddings"], strict=True)}

    async def delete(self, *, ids: list[str] | None = None, where: dict[str, Any] | None = None) -> None:
        if ids == []:
            return
        await asyncio.to_thread(self.collection.delete, ids=ids, where=where)

    async def entries(self, exclude: set[str], page: int = 10_000) -> dict[tuple[str, str], list[str]]:
        """Ids not in ``exclude``, grouped by (knowledge base, source)."""

        def group() -> dict[tuple[str, str], list[str]]:
            found: dict[tuple[str, str], list[str]] = {}
            for batch in self.pages(["metadatas"], page):
                for chunk_id, meta in zip(batch["ids"], batch["metadatas"], strict=True):
                    if chunk_id not in exclude:
                        found.setdefault((meta["knowledge_base_id"], meta["source"]), []).append(chunk_id)
            return found

        return await asyncio.to_thread(group)
