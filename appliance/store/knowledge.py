"""Knowledge bases, documents and chunks in PostgreSQL.

PostgreSQL is the source of truth: the chunks table lists the live chunks,
carries their text and a full-text index for lexical search, and gates what
Chroma's dense search may return.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record

DocumentStatus = Literal["processing", "ready", "failed"]

_KB_COLUMNS = "knowledge_base_id, name, description, metadata, created_at, updated_at"
_DOC_COLUMNS = (
    "document_id, knowledge_base_id, source, title, media_type, content_hash, size_bytes, pages, "
    "chunk_count, generation, status, error, indexed, created_at, updated_at"
)
_CHUNK_COLUMNS = (
    "c.chunk_id, c.document_id, c.knowledge_base_id, c.chunk_index, c.heading, c.page, c.text, d.source, d.title"
)


class KnowledgeBaseRecord(msgspec.Struct, frozen=True):
    knowledge_base_id: uuid.UUID
    name: str
    description: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DocumentRecord(msgspec.Struct, frozen=True):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    source: str
    title: str
    media_type: str
    content_hash: str
    size_bytes: int
    pages: int | None
    chunk_count: int
    generation: int
    status: DocumentStatus
    error: str | None
    indexed: bool  # False while Chroma lacks this generation's vectors (lexical search has them)
    created_at: datetime
    updated_at: datetime


class ChunkRecord(msgspec.Struct, frozen=True):
    chunk_id: str
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    chunk_index: int
    heading: str
    page: int | None
    text: str
    source: str
    title: str


class NewChunk(msgspec.Struct, frozen=True):
    chunk_id: str
    chunk_index: int
    heading: str
    page: int | None
    text: str


class ChunkFilter(msgspec.Struct, frozen=True, kw_only=True):
    knowledge_base_ids: list[uuid.UUID]
    document_ids: list[uuid.UUID] | None = None
    sources: list[str] | None = None

    def where(self, params: list[Any]) -> str:
        clauses = ["c.knowledge_base_id = ANY(%s)"]
        params.append(self.knowledge_base_ids)
        if self.document_ids:
            clauses.append("c.document_id = ANY(%s)")
            params.append(self.document_ids)
        if self.sources:
            clauses.append("d.source = ANY(%s)")
            params.append(self.sources)
        return " AND ".join(clauses)


class KnowledgeBaseExists(Exception):
    pass


class KnowledgeStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    # Knowledge bases ------------------------------------------------------

    async def create_base(
        self, tenant: str, name: str, description: str, metadata: dict, actor: Actor
    ) -> KnowledgeBaseRecord:
        try:
            async with self.pool.connection() as conn, conn.transaction():
                row = await (
                    await conn.execute(
                        f"""INSERT INTO knowledge_bases (knowledge_base_id, tenant, name, description, metadata)
                            VALUES (%s, %s, %s, %s, %s) RETURNING {_KB_COLUMNS}""",
                        (uuid.uuid4(), tenant, name, description, Jsonb(metadata)),
                    )
                ).fetchone()
                target = str(row["knowledge_base_id"])
                await record(conn, actor, "knowledge_base.created", tenant=tenant, target=target, detail={"name": name})
        except pg_errors.UniqueViolation:
            raise KnowledgeBaseExists(name) from None
        return KnowledgeBaseRecord(**row)

    async def list_bases(self, tenant: str) -> list[KnowledgeBaseRecord]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_KB_COLUMNS} FROM knowledge_bases WHERE tenant = %s ORDER BY name", (tenant,)
                )
            ).fetchall()
        return [KnowledgeBaseRecord(**r) for r in rows]

    async def get_base(
        self, tenant: str, *, kb_id: uuid.UUID | None = None, name: str | None = None
    ) -> KnowledgeBaseRecord | None:
        column, value = ("knowledge_base_id", kb_id) if kb_id else ("name", name)
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_KB_COLUMNS} FROM knowledge_bases WHERE {column} = %s AND tenant = %s", (value, tenant)
                )
            ).fetchone()
        return KnowledgeBaseRecord(**row) if row else None

    async def owned_bases(self, tenant: str, kb_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT knowledge_base_id FROM knowledge_bases WHERE tenant = %s AND knowledge_base_id = ANY(%s)",
                    (tenant, list(kb_ids)),
                )
            ).fetchall()
        return {r["knowledge_base_id"] for r in rows}

    async def delete_base(self, tenant: str, kb_id: uuid.UUID, actor: Actor) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "DELETE FROM knowledge_bases WHERE knowledge_base_id = %s AND tenant = %s RETURNING name",
                    (kb_id, tenant),
                )
            ).fetchone()
            if row:
                detail = {"name": row["name"]}
                await record(conn, actor, "knowledge_base.deleted", tenant=tenant, target=str(kb_id), detail=detail)
            return row is not None

    # Documents ------------------------------------------------------------

    async def list_documents(self, kb_id: uuid.UUID) -> list[DocumentRecord]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_DOC_COLUMNS} FROM documents WHERE knowledge_base_id = %s ORDER BY source", (kb_id,)
                )
            ).fetchall()
        return [DocumentRecord(**r) for r in rows]

    async def get_document(
        self, kb_id: uuid.UUID, *, document_id: uuid.UUID | None = None, source: str | None = None
    ) -> DocumentRecord | None:
        column, value = ("document_id", document_id) if document_id else ("source", source)
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_DOC_COLUMNS} FROM documents WHERE knowledge_base_id = %s AND {column} = %s",
                    (kb_id, value),
                )
            ).fetchone()
        return DocumentRecord(**row) if row else None

    @asynccontextmanager
    async def source_lock(self, kb_id: uuid.UUID, source: str, *, wait: bool = True) -> AsyncIterator[bool]:
        """One ingestion of a given source at a time, across processes. With
        ``wait=False`` it yields False at once when another holder has it."""
        key = f"{kb_id}/{source}"
        async with self.pool.connection() as conn:
            if wait:
                await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 4242))", (key,))
            else:
                row = await (
                    await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 4242)) AS held", (key,))
                ).fetchone()
                if not row["held"]:
                    yield False
                    return
            try:
                yield True
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 4242))", (key,))

    async def mark_processing(
        self, kb_id: uuid.UUID, source: str, media_type: str, content_hash: str, size: int
    ) -> DocumentRecord:
        """Record a new source as processing; an existing one keeps serving its live chunks."""
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO documents (document_id, knowledge_base_id, source, media_type, content_hash,
                                          size_bytes, generation, status)
                   VALUES (%s, %s, %s, %s, %s, %s, 0, 'processing')
                   ON CONFLICT (knowledge_base_id, source) DO NOTHING""",
                (uuid.uuid4(), kb_id, source, media_type, content_hash, size),
            )
        return await self.get_document(kb_id, source=source)

    async def publish(
        self,
        document: DocumentRecord,
        *,
        title: str,
        media_type: str,
        content_hash: str,
        size: int,
        pages: int | None,
        generation: int,
        chunks: Sequence[NewChunk],
        indexed: bool = True,
        actor: Actor,
    ) -> DocumentRecord:
        """Swap the document's live chunks for ``chunks`` in one transaction, audited."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM chunks WHERE document_id = %s", (document.document_id,))
            async with conn.cursor() as cur:
                columns = "chunk_id, document_id, knowledge_base_id, chunk_index, heading, page, text"
                async with cur.copy(f"COPY chunks ({columns}) FROM STDIN") as copy:
                    for c in chunks:
                        await copy.write_row(
                            (c.chunk_id, document.document_id, document.knowledge_base_id, c.chunk_index,
                             c.heading, c.page, c.text)
                        )  # fmt: skip
            row = await (
                await conn.execute(
                    f"""UPDATE documents SET title = %s, media_type = %s, content_hash = %s, size_bytes = %s,
                               pages = %s, chunk_count = %s, generation = %s, status = 'ready', error = NULL,
                               indexed = %s, updated_at = now()
                        WHERE document_id = %s RETURNING {_DOC_COLUMNS}""",
                    (
                        title,
                        media_type,
                        content_hash,
                        size,
                        pages,
                        len(chunks),
                        generation,
                        indexed,
                        document.document_id,
                    ),
                )
            ).fetchone()
            published = DocumentRecord(**row)
            await self._audit_document(
                conn, actor, published, "document.replaced" if document.generation else "document.created"
            )
        return published

    async def _audit_document(self, conn: AsyncConnection, actor: Actor, document: DocumentRecord, action: str) -> None:
        owner = await (
            await conn.execute(
                "SELECT tenant FROM knowledge_bases WHERE knowledge_base_id = %s", (document.knowledge_base_id,)
            )
        ).fetchone()
        detail = {
            "knowledge_base_id": str(document.knowledge_base_id),
            "source": document.source,
            "size_bytes": document.size_bytes,
        }
        await record(
            conn, actor, action, tenant=owner and owner["tenant"], target=str(document.document_id), detail=detail
        )

    async def mark_failed(self, document_id: uuid.UUID, reason: str) -> None:
        """A new document that could not be ingested; a published one keeps its live chunks."""
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE documents SET status = 'failed', error = %s, updated_at = now()
                   WHERE document_id = %s AND generation = 0""",
                (reason, document_id),
            )

    async def delete_document(self, document: DocumentRecord, actor: Actor) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM documents WHERE knowledge_base_id = %s AND document_id = %s",
                (document.knowledge_base_id, document.document_id),
            )
            if cur.rowcount:
                await self._audit_document(conn, actor, document, "document.deleted")
            return cur.rowcount == 1

    async def unindexed(self, limit: int = 100) -> list[DocumentRecord]:
        """Published documents whose vectors Chroma does not hold yet, oldest first."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"""SELECT {_DOC_COLUMNS} FROM documents WHERE NOT indexed AND status = 'ready'
                        ORDER BY updated_at LIMIT %s""",
                    (limit,),
                )
            ).fetchall()
        return [DocumentRecord(**r) for r in rows]

    async def count_unindexed(self) -> int:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM documents WHERE NOT indexed AND status = 'ready'")
            ).fetchone()
        return row["n"]

    async def mark_indexed(self, document_id: uuid.UUID, generation: int) -> bool:
        """Chroma holds this generation's vectors now (False: a newer one was published meanwhile)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE documents SET indexed = true WHERE document_id = %s AND generation = %s",
                (document_id, generation),
            )
            return cur.rowcount == 1

    async def document_chunks(self, document_id: uuid.UUID) -> list[ChunkRecord]:
        """A document's live chunks, in order."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"""SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (document_id)
                        WHERE c.document_id = %s ORDER BY c.chunk_index""",
                    (document_id,),
                )
            ).fetchall()
        return [ChunkRecord(**r) for r in rows]

    async def fail_interrupted(self) -> int:
        """Documents left 'processing' by a process that died mid-ingestion."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE documents SET status = 'failed', updated_at = now(),
                          error = 'ingestion was interrupted (the server stopped); upload the file again'
                   WHERE status = 'processing'"""
            )
            return cur.rowcount

    # Chunks ---------------------------------------------------------------

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection that sees one moment: queries through it never
        mix the chunks of two versions of a document."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    async def chunks_by_id(
        self, conn: AsyncConnection, ids: Sequence[str], scope: ChunkFilter
    ) -> dict[str, ChunkRecord]:
        """The live chunks among ``ids`` that pass the filter."""
        params: list[Any] = [list(ids)]
        where = scope.where(params)
        rows = await (
            await conn.execute(
                f"""SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (document_id)
                    WHERE c.chunk_id = ANY(%s) AND {where}""",
                params,
            )
        ).fetchall()
        return {r["chunk_id"]: ChunkRecord(**r) for r in rows}

    async def vocabulary(self, scope: ChunkFilter, question: str) -> tuple[list[tuple[str, str]], dict[str, int]]:
        """The question's words with their stems (PostgreSQL's English
        dictionary, as the index has them; stop words have none), and the
        stems of the searched chunks that begin as one of the question's do
        (the only ones lexical expansion can relate), with how many chunks hold each."""
        inner = sql.SQL("SELECT search FROM chunks WHERE knowledge_base_id = ANY({}::uuid[])").format(
            sql.Literal([str(i) for i in scope.knowledge_base_ids])
        )
        async with self.pool.connection() as conn:
            asked = await (
                await conn.execute(
                    "SELECT token, lexemes[1] AS stem FROM ts_debug('english', %s) WHERE lexemes <> '{}'", (question,)
                )
            ).fetchall()
            openings = sorted({r["stem"][:2] for r in asked})
            rows = await (
                await conn.execute(
                    "SELECT word, ndoc FROM ts_stat(%s) WHERE left(word, 2) = ANY(%s)",
                    (inner.as_string(conn), openings),
                )
            ).fetchall()
        return [(r["token"], r["stem"]) for r in asked], {r["word"]: r["ndoc"] for r in rows}

    async def lexical_search(
        self, conn: AsyncConnection, query: str, scope: ChunkFilter, limit: int
    ) -> list[ChunkRecord]:
        """Chunks ranked by how rare the query's terms they contain are.

        Each stem of the query scores its BM25 inverse document frequency
        within the searched chunks, so a chunk holding the one rare term
        (an option's name) outranks one holding three common words; ties go to
        ts_rank. Any term may match: a question's words rarely all appear in
        one chunk.
        """
        params: list[Any] = [query]
        total_where = scope.where(params)
        df_where = scope.where(params)
        where = scope.where(params)
        params.append(limit)
        rows = await (
            await conn.execute(
                f"""WITH lexemes AS (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %s))),
                    terms AS (SELECT to_tsquery('simple', quote_literal(lexeme)) AS q FROM lexemes),
                    any_term AS (
                        SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS q FROM lexemes),
                    total AS (
                        SELECT count(*)::float8 AS n FROM chunks c JOIN documents d USING (document_id)
                        WHERE {total_where}),
                    idf AS (
                        SELECT t.q, ln(1 + (total.n - df.n + 0.5) / (df.n + 0.5)) AS w
                        FROM terms t CROSS JOIN total CROSS JOIN LATERAL (
                            SELECT count(*)::float8 AS n FROM chunks c JOIN documents d USING (document_id)
                            WHERE c.search @@ t.q AND {df_where}) df)
                    SELECT {_CHUNK_COLUMNS}
                    FROM chunks c JOIN documents d USING (document_id) JOIN idf i ON c.search @@ i.q
                    WHERE {where}
                    GROUP BY c.chunk_id, d.document_id
                    ORDER BY sum(i.w) DESC, ts_rank(c.search, (SELECT q FROM any_term), 1) DESC, d.source, c.chunk_index
                    LIMIT %s""",
                params,
            )
        ).fetchall()
        return [ChunkRecord(**r) for r in rows]

    async def live_chunk_ids(self, among: Sequence[str] | None = None) -> set[str]:
        """Every live chunk id, or those of ``among`` that are live."""
        sql, params = "SELECT chunk_id FROM chunks", ()
        if among is not None:
            sql, params = sql + " WHERE chunk_id = ANY(%s)", (list(among),)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
        return {r["chunk_id"] for r in rows}
