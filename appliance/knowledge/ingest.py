"""One document in: extract, chunk, embed, index, publish.

The order makes every outcome safe. A file that cannot be read is refused
before anything is written. New vectors go into Chroma under a new generation
first, invisible to queries because PostgreSQL does not list them yet; one
PostgreSQL transaction then swaps the document's live chunks; the old
generation's vectors are removed last. A crash at any step leaves either the
old version or the new one live, never half of each, and at worst some
unlisted vectors that :meth:`Ingestor.sweep` removes.

Chroma unreachable does not stop an upload: the chunks are published in
PostgreSQL marked ``indexed = false`` (lexical search finds them at once), and
:meth:`Ingestor.reconcile` indexes their vectors when Chroma answers again;
vectors whose removal failed meanwhile go with the next sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

from appliance.knowledge.chunking import Chunk, chunk_sections
from appliance.knowledge.embeddings import Embedder, embedding_text
from appliance.knowledge.errors import DocumentRejected, DocumentTooLarge
from appliance.knowledge.extract import Extracted, extract, media_type_of
from appliance.store.audit import Actor
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
        self.unswept = False  # a removal from the index failed: sweep when it answers again

    def read(self, source: str, data: bytes) -> tuple[Extracted, list[Chunk]]:
        """Extract and chunk, or raise DocumentRejected; CPU only, nothing written."""
        extracted = extract(source, data)
        return extracted, chunk_sections(extracted.sections, size=self.chunk_words, overlap=self.overlap_words)

    async def ingest(self, kb_id: uuid.UUID, filename: str, data: bytes, actor: Actor) -> Ingested:
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
                title = extracted.title
                vectors = await self.embedder.aembed([embedding_text(title, c.heading, c.text) for c in chunks])
                metadatas = [vector_metadata(document, title, generation, c.index, c.heading, c.page) for c in chunks]
                indexed = await self._index(ids, vectors, metadatas)
                published = await self.store.publish(
                    document,
                    title=extracted.title,
                    media_type=media_type,
                    content_hash=content_hash,
                    size=len(data),
                    pages=extracted.pages,
                    generation=generation,
                    chunks=[NewChunk(i, c.index, c.heading, c.page, c.text) for i, c in zip(ids, chunks, strict=True)],
                    indexed=indexed,
                    actor=actor,
                )
            except BaseException as exc:
                await asyncio.shield(self._abandon(document, ids, exc))
                raise
            # Older generations are unlisted now; removing their vectors is housekeeping.
            await self._forget(where=_older(document.document_id, generation))
        return Ingested(published, "replaced" if existing and existing.generation else "created")

    async def _index(self, ids: list[str], vectors: list[list[float]], metadatas: list[dict]) -> bool:
        """Add the vectors; False when Chroma cannot take them now (the reconciler will)."""
        try:
            await self.index.add(ids, vectors, metadatas)
        except Exception as exc:  # Chroma down, restarting or failing: PostgreSQL stays the truth
            log.warning("the vector index is unavailable (%r); the document is published for lexical search", exc)
            return False
        return True

    async def _forget(self, **which: Any) -> None:
        """Remove vectors PostgreSQL no longer lists; when Chroma cannot, the next sweep does."""
        try:
            await self.index.delete(**which)
        except Exception as exc:
            log.warning("could not remove vectors from the index (%r); the next sweep will", exc)
            self.unswept = True

    async def _abandon(self, document: DocumentRecord, ids: list[str], exc: BaseException) -> None:
        log.error("ingestion of %s failed: %s", document.source, exc)
        try:
            await self.store.mark_failed(document.document_id, f"ingestion failed: {exc}")
        except Exception:  # the sweep at the next start marks it
            log.exception("could not mark the failed ingestion of %s", document.source)
        await self._forget(ids=ids)

    async def delete_document(self, document: DocumentRecord, actor: Actor) -> None:
        await self.store.delete_document(document, actor)
        await self._forget(where={"document_id": str(document.document_id)})

    async def delete_base(self, tenant: str, kb_id: uuid.UUID, actor: Actor) -> bool:
        deleted = await self.store.delete_base(tenant, kb_id, actor)
        if deleted:
            await self._forget(where={"knowledge_base_id": str(kb_id)})
        return deleted

    async def keep_reconciling(self, every_s: float) -> None:
        """Reconcile every ``every_s`` seconds until cancelled; while Chroma is away each try fails quietly."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("the vector index is still unavailable: %r", exc)

    async def reconcile(self) -> int:
        """Index the vectors of documents published while Chroma was away, and
        sweep what could not be removed then. Returns how many documents were indexed."""
        indexed = 0
        for document in await self.store.unindexed():
            async with self.store.source_lock(document.knowledge_base_id, document.source, wait=False) as held:
                if not held:
                    continue  # being ingested again: that ingestion indexes it
                chunks = await self.store.document_chunks(document.document_id)
                vectors = await self.embedder.aembed([embedding_text(c.title, c.heading, c.text) for c in chunks])
                metadatas = [
                    vector_metadata(document, document.title, document.generation, c.chunk_index, c.heading, c.page)
                    for c in chunks
                ]
                await self.index.add([c.chunk_id for c in chunks], vectors, metadatas)
                if await self.store.mark_indexed(document.document_id, document.generation):
                    indexed += 1
                await self._forget(where=_older(document.document_id, document.generation))
        if self.unswept:
            await self.sweep()  # raises while Chroma is away: the flag stays for the next try
            self.unswept = False
        if indexed:
            log.info("indexed the vectors of %d documents published while the vector index was away", indexed)
        return indexed

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


def _older(document_id: uuid.UUID, generation: int) -> dict[str, Any]:
    return {"$and": [{"document_id": str(document_id)}, {"generation": {"$lt": generation}}]}


def vector_metadata(
    document: DocumentRecord, title: str, generation: int, chunk_index: int, heading: str, page: int | None
) -> dict:
    metadata = {
        "knowledge_base_id": str(document.knowledge_base_id),
        "document_id": str(document.document_id),
        "source": document.source,
        "title": title,
        "heading": heading,
        "chunk_index": chunk_index,
        "generation": generation,
    }
    if page is not None:  # Chroma metadata has no null
        metadata["page"] = page
    return metadata
