"""Knowledge bases and their documents: create, list, read, delete; upload; search."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, JSONBody

from appliance.api.schemas import (
    Document,
    KnowledgeBase,
    KnowledgeBaseCreate,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from appliance.runtime import Runtime
from appliance.store.audit import Actor
from appliance.store.knowledge import DocumentRecord, KnowledgeBaseRecord


@dataclass
class DocumentUpload:
    """A multipart upload: the document in the field ``file``."""

    file: UploadFile


def to_knowledge_base(record: KnowledgeBaseRecord) -> KnowledgeBase:
    return KnowledgeBase(**msgspec.structs.asdict(record))


def to_document(record: DocumentRecord, outcome: str | None = None) -> Document:
    fields = msgspec.structs.asdict(record)
    fields.pop("generation")
    return Document(**fields, outcome=outcome)


class KnowledgeBaseController(Controller):
    path = "/knowledge-bases"
    tags = ["knowledge bases"]

    @post("/", summary="Create a knowledge base")
    async def create(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        data: JSONBody[KnowledgeBaseCreate],
    ) -> KnowledgeBase:
        created = await runtime.knowledge.create(tenant, data.name, data.description, data.metadata, actor=actor)
        return to_knowledge_base(created)

    @get("/", summary="List the tenant's knowledge bases")
    async def list_all(self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str]) -> list[KnowledgeBase]:
        return [to_knowledge_base(r) for r in await runtime.knowledge.list(tenant)]

    @get("/{kb_id:uuid}", summary="Get a knowledge base")
    async def read(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], kb_id: FromPath[uuid.UUID]
    ) -> KnowledgeBase:
        return to_knowledge_base(await runtime.knowledge.require(tenant, kb_id))

    @delete("/{kb_id:uuid}", summary="Delete a knowledge base with all its documents")
    async def remove(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        kb_id: FromPath[uuid.UUID],
    ) -> None:
        await runtime.knowledge.delete(tenant, kb_id, actor=actor)

    @post("/{kb_id:uuid}/documents", summary="Add or replace a document (multipart, field 'file')")
    async def upload(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        kb_id: FromPath[uuid.UUID],
        data: Annotated[DocumentUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[Document]:
        upload = data.file
        content = await upload.read()
        async with runtime.limits.uploading(actor.key_id, tenant):
            ingested = await runtime.knowledge.add_document(tenant, kb_id, upload.filename or "", content, actor=actor)
        status = 200 if ingested.outcome == "unchanged" else 201
        return Response(to_document(ingested.document, ingested.outcome), status_code=status)

    @get("/{kb_id:uuid}/documents", summary="List the documents of a knowledge base")
    async def documents(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], kb_id: FromPath[uuid.UUID]
    ) -> list[Document]:
        return [to_document(d) for d in await runtime.knowledge.documents(tenant, kb_id)]

    @get("/{kb_id:uuid}/documents/{document_id:uuid}", summary="Get a document")
    async def document(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        kb_id: FromPath[uuid.UUID],
        document_id: FromPath[uuid.UUID],
    ) -> Document:
        return to_document(await runtime.knowledge.document(tenant, kb_id, document_id))

    @delete("/{kb_id:uuid}/documents/{document_id:uuid}", summary="Delete a document and all its chunks")
    async def remove_document(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        kb_id: FromPath[uuid.UUID],
        document_id: FromPath[uuid.UUID],
    ) -> None:
        await runtime.knowledge.delete_document(tenant, kb_id, document_id, actor=actor)

    @post("/{kb_id:uuid}/search", status_code=200, summary="Hybrid search over a knowledge base")
    async def search(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        kb_id: FromPath[uuid.UUID],
        data: JSONBody[SearchRequest],
    ) -> SearchResponse:
        found = await runtime.knowledge.search(
            tenant,
            kb_id,
            data.query,
            data.k or runtime.settings.retrieval_k,
            document_ids=data.document_ids,
            sources=data.sources,
            mode=data.mode,
        )
        return SearchResponse(
            results=[
                SearchResult(
                    document_id=p.chunk.document_id,
                    source=p.chunk.source,
                    page=p.chunk.page,
                    heading=p.chunk.heading,
                    text=p.chunk.text,
                    score=p.score,
                    title=p.chunk.title,
                    chunk_id=p.chunk.chunk_id,
                    similarity=p.similarity,
                )
                for p in found.passages
            ],
            degraded=found.degraded,
        )
