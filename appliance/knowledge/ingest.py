"""One document in: extract, chunk, embed, index, publish.

The order makes every outcome safe. A file that cannot be read is refused
before anything is written. New vectors go into Chroma under a new generation
first, invisible to queries because PostgreSQL does not list them yet; one
PostgreSQL transaction then swaps the document's live chunks; the old
generation's vectors are removed last. A crash at any step leaves either the
old version or the new one live, never half of each, and at worst some
unlisted vectors that :meth:`Ingestor.sweep` removes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from appliance.knowledge.chunking import Chunk, chunk_sections
from appliance.knowledge.embeddings import Embedder
from appliance.knowledge.errors import DocumentRejected, DocumentTooLarge
from appliance.knowledge.extract import Extracted, extract, media_type_of
from appliance.store.knowledge import DocumentRecord, KnowledgeStore, NewChunk
from appliance.store.vectors import ChunkIndex

log = logging.getLogger(__name__)

Outcome = Literal["created", "replaced", "unchanged"]


@dataclass(frozen=True)
class Ingested:
    document: DocumentRecord
    outcome: Outcome


def source_name(filename: str) -> str:
    """The file's own name: a path a client sends is not ours to keep."""
    name = PurePath(filename.replace("\\", "/")).name.strip()
    if not name or name in {".", ".."}:
        raise DocumentRejected(f"'{filename}' is not a usable file name")
    return name


def chunk_id(document_id: uuid.UUID, generation: int, index: int) -> str:
    return f"{document_id}:{generation}:{index}"


def embedding_text(title: str, chunk: Chunk) -> str:
    """What is embedded: the chunk with its place in the document, which often carries the topic."""
    context = chunk.heading if title in chunk.heading else " > ".join(p for p in (title, chunk.heading) if p)
    return f"{context}\n{chunk.text}" if context else chunk.text


class Ingestor:
    def __init__(
        self,
        store: KnowledgeStore,
        index: ChunkIndex,
        embedder: Embedder,
        *,
        chunk_words: int,
        overlap_words: int,
        max_bytes: int,
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.chunk_words = chunk_words
        self.overlap_words = overlap_words
        self.max_bytes = max_bytes

    def read(self, source: str, data: bytes) -> tuple[Extracted, list[Chunk]]:
        """Extract and chunk, or raise DocumentRejected; CPU only, nothing written."""
        extracted = extract(source, data)
        return extracted, chunk_sections(extracted.sections, size=self.chunk_words, overlap=self.overlap_words)

    async def ingest(self, kb_id: uuid.UUID, filename: str, data: bytes) -> Ingested:
        source = source_name(filename)
        media_type = media_type_of(source)
        if len(data) > self.max_bytes:
            raise DocumentTooLarge(f"{source} is {len(data)} bytes; the limit is {self.max_bytes} bytes")
        content_hash = hashlib.sha256(data).hexdigest()
        async with self.store.source_lock(kb_id, source):
            existing = await self.store.get_document(kb_id, source=source)
            if existing and existing.status == "ready" and existing.content_hash == content_hash:
                return Ingested(existing, "unchanged")
            extracted, chunks = await asyncio.to_thread(self.read, source, data)
            document = existing or await self.store.mark_processing(kb_id, source, media_type, content_hash, len(data))
            generation = document.generation + 1
            ids = [chunk_id(document.document_id, generation, c.index) for c in chunks]
            try:
                vectors = await self.embedder.aembed([embedding_text(extracted.title, c) for c in chunks])
                await self.index.add(
                    ids, vectors, [_vector_metadata(document, extracted, generation, c) for c in chunks]
                )
                published = await self.store.publish(
                    document,
                    title=extracted.title,
                    media_type=media_type,
                    content_hash=content_hash,
                    size=len(data),
                    pages=extracted.pages,
                    generation=generation,
                    chunks=[NewChunk(i, c.index, c.heading, c.page, c.text) for i, c in zip(ids, chunks, strict=True)],
                )
            except BaseException as exc:
                await asyncio.shield(self._abandon(document, ids, exc))
                raise
            # Older generations are unlisted now; removing their vectors is housekeeping.
            await self.index.delete(
                where={"$and": [{"document_id": str(document.document_id)}, {"generation": {"$lt": generation}}]}
            )
        return Ingested(published, "replaced" if existing and existing.generation else "created")

    async def _abandon(self, document: DocumentRecord, ids: list[str], exc: BaseException) -> None:
        log.error("ingestion of %s failed: %s", document.source, exc)
        try:
            await self.store.mark_failed(document.document_id, f"ingestion failed: {exc}")
            await self.index.delete(ids=ids)
        except Exception:  # the sweep at the next start removes what is left
            log.exception("could not clean up after the failed ingestion of %s", document.source)

    async def delete_document(self, document: DocumentRecord) -> None:
        await self.store.delete_document(document.knowledge_base_id, document.document_id)
        await self.index.delete(where={"document_id": str(document.document_id)})

    async def delete_base(self, tenant: str, kb_id: uuid.UUID) -> bool:
        deleted = await self.store.delete_base(tenant, kb_id)
        if deleted:
            await self.index.delete(where={"knowledge_base_id": str(kb_id)})
        return deleted

    async def sweep(self) -> int:
        """Remove vectors PostgreSQL does not list (left by a crash) and fail interrupted ingestions."""
        await self.store.fail_interrupted()
        candidates = await self.index.entries(await self.store.live_chunk_ids())
        removed = 0
        for (kb_id, source), ids in candidates.items():
            # An ingestion running in another process holds the source's lock: its vectors are not orphans.
            async with self.store.source_lock(uuid.UUID(kb_id), source, wait=False) as held:
                if held:
                    orphans = set(ids) - await self.store.live_chunk_ids(among=ids)
                    await self.index.delete(ids=sorted(orphans))
                    removed += len(orphans)
        if removed:
            log.info("removed %d orphan vectors left by an interrupted ingestion", removed)
        return removed


def _vector_metadata(document: DocumentRecord, extracted: Extracted, generation: int, chunk: Chunk) -> dict:
    metadata = {
        "knowledge_base_id": str(document.knowledge_base_id),
        "document_id": str(document.document_id),
        "source": document.source,
        "title": extracted.title,
        "heading": chunk.heading,
        "chunk_index": chunk.index,
        "generation": generation,
    }
    if chunk.page is not None:  # Chroma metadata has no null
        metadata["page"] = chunk.page
    return metadata
