"""Knowledge bases as a tenant sees them: ownership, documents and search."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from appliance.agent.context import ALL_KNOWLEDGE_BASES
from appliance.errors import Conflict, Invalid, NotFound
from appliance.knowledge.ingest import Ingested, Ingestor
from appliance.knowledge.retrieval import Mode, Retrieved, Retriever
from appliance.store.audit import Actor
from appliance.store.knowledge import (
    ChunkFilter,
    DocumentRecord,
    KnowledgeBaseExists,
    KnowledgeBaseRecord,
    KnowledgeStore,
)

MAX_NAME_LENGTH = 200


class KnowledgeService:
    def __init__(self, store: KnowledgeStore, ingestor: Ingestor, retriever: Retriever) -> None:
        self.store = store
        self.ingestor = ingestor
        self.retriever = retriever

    async def create(
        self, tenant: str, name: str, description: str = "", metadata: dict | None = None, *, actor: Actor
    ) -> KnowledgeBaseRecord:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise Invalid(f"name must be 1 to {MAX_NAME_LENGTH} characters")
        try:
            return await self.store.create_base(tenant, name, description, metadata or {}, actor)
        except KnowledgeBaseExists:
            raise Conflict(f"a knowledge base named {name!r} already exists; pick another name") from None

    async def list(self, tenant: str) -> list[KnowledgeBaseRecord]:
        return await self.store.list_bases(tenant)

    async def require(self, tenant: str, kb_id: uuid.UUID) -> KnowledgeBaseRecord:
        record = await self.store.get_base(tenant, kb_id=kb_id)
        if record is None:
            raise NotFound(f"knowledge base {kb_id} not found")
        return record

    async def by_name(self, tenant: str, name: str) -> KnowledgeBaseRecord | None:
        return await self.store.get_base(tenant, name=name)

    async def delete(self, tenant: str, kb_id: uuid.UUID, *, actor: Actor) -> None:
        if not await self.ingestor.delete_base(tenant, kb_id, actor):
            raise NotFound(f"knowledge base {kb_id} not found")

    async def add_document(
        self, tenant: str, kb_id: uuid.UUID, filename: str, data: bytes, *, actor: Actor
    ) -> Ingested:
        await self.require(tenant, kb_id)
        return await self.ingestor.ingest(kb_id, filename, data, actor)

    async def documents(self, tenant: str, kb_id: uuid.UUID) -> list[DocumentRecord]:
        await self.require(tenant, kb_id)
        return await self.store.list_documents(kb_id)

    async def document(self, tenant: str, kb_id: uuid.UUID, document_id: uuid.UUID) -> DocumentRecord:
        await self.require(tenant, kb_id)
        document = await self.store.get_document(kb_id, document_id=document_id)
        if document is None:
            raise NotFound(f"document {document_id} not found in knowledge base {kb_id}")
        return document

    async def delete_document(self, tenant: str, kb_id: uuid.UUID, document_id: uuid.UUID, *, actor: Actor) -> None:
        await self.ingestor.delete_document(await self.document(tenant, kb_id, document_id), actor)

    async def search(
        self,
        tenant: str,
        kb_id: uuid.UUID,
        query: str,
        k: int,
        *,
        document_ids: list[uuid.UUID] | None = None,
        sources: list[str] | None = None,
        mode: Mode = "hybrid",
    ) -> Retrieved:
        await self.require(tenant, kb_id)
        if not query.strip():
            raise Invalid("query must not be empty")
        scope = ChunkFilter(knowledge_base_ids=[kb_id], document_ids=document_ids, sources=sources)
        return await self.retriever.search(query, scope, k, mode=mode)

    async def vectors_indexed(self) -> int:
        """Chroma's vector count (it answers only when Chroma is up)."""
        return await self.ingestor.index.count()

    async def resolve(
        self, tenant: str, value: Any, where: str, *, lenient: bool = False, every: list[str] | None = None
    ) -> list[str]:
        """Knowledge base ids a run may use, checked to be the tenant's own (else 404,
        as for any reference to what does not exist or is another tenant's):
        ``value`` lists ids or names, or is ``["*"]``, every knowledge base the
        tenant has now (``every``, when the caller has just read them). ``lenient``
        drops those that no longer exist (an assistant's choice, made before
        they were deleted) instead of refusing."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"{where} must be a list of knowledge base ids or names", param=where)
        if ALL_KNOWLEDGE_BASES in value:
            return every if every is not None else [str(kb.knowledge_base_id) for kb in await self.list(tenant)]
        ids: list[uuid.UUID] = []
        for v in value:
            try:
                ids.append(uuid.UUID(v))
            except ValueError:
                named = await self.by_name(tenant, v)
                if named is None and not lenient:
                    raise NotFound(f"{where} names a knowledge base that does not exist: {v!r}", param=where) from None
                if named is not None:
                    ids.append(named.knowledge_base_id)
        owned = await self.store.owned_bases(tenant, ids)
        missing = _missing(ids, owned)
        if missing and not lenient:
            raise NotFound(
                f"{where} names knowledge bases that do not exist: {', '.join(map(str, missing))}", param=where
            )
        return [str(i) for i in dict.fromkeys(ids) if i in owned]


def _missing(ids: Sequence[uuid.UUID], owned: set[uuid.UUID]) -> list[uuid.UUID]:
    return [i for i in ids if i not in owned]
