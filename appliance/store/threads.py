"""Threads: who owns a conversation, its metadata and status. The
conversation itself lives in the checkpointer's tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
SortBy = Literal["thread_id", "status", "created_at", "updated_at"]

_COLUMNS = "thread_id, metadata, status, created_at, updated_at"


class ThreadRecord(msgspec.Struct, frozen=True):
    thread_id: uuid.UUID
    metadata: dict[str, Any]
    status: ThreadStatus
    created_at: datetime
    updated_at: datetime


class ThreadQuery(msgspec.Struct, frozen=True, kw_only=True):
    ids: list[uuid.UUID] | None = None
    metadata: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    limit: int = 10
    offset: int = 0
    sort_by: SortBy = "updated_at"
    descending: bool = True


class ThreadExists(Exception):
    pass


def _record(row: dict[str, Any]) -> ThreadRecord:
    return ThreadRecord(**row)


class ThreadStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(
        self, tenant: str, thread_id: uuid.UUID, metadata: dict[str, Any], *, if_exists: str
    ) -> ThreadRecord:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"""INSERT INTO threads (thread_id, tenant, metadata) VALUES (%s, %s, %s)
                        ON CONFLICT (thread_id) DO NOTHING RETURNING {_COLUMNS}""",
                    (thread_id, tenant, Jsonb(metadata)),
                )
            ).fetchone()
        if row:
            return _record(row)
        existing = await self.get(tenant, thread_id)
        if existing is not None and if_exists == "do_nothing":
            return existing
        raise ThreadExists(str(thread_id))

    async def get(self, tenant: str, thread_id: uuid.UUID) -> ThreadRecord | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM threads WHERE thread_id = %s AND tenant = %s",
                    (thread_id, tenant),
                )
            ).fetchone()
        return _record(row) if row else None

    async def get_with_bases(self, tenant: str, thread_id: uuid.UUID) -> tuple[ThreadRecord | None, list[str]]:
        """The thread (None: not the tenant's, or none), and the ids of every
        knowledge base of its tenant, by name: what a run on it reads before it
        is queued (an assistant's ``["*"]``), in one statement where it was two."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"""SELECT {_COLUMNS},
                               ARRAY(SELECT knowledge_base_id::text FROM knowledge_bases
                                      WHERE tenant = %(tenant)s ORDER BY name) AS tenant_bases
                          FROM (VALUES (1)) AS one
                          LEFT JOIN threads ON thread_id = %(thread)s AND tenant = %(tenant)s""",
                    {"thread": thread_id, "tenant": tenant},
                )
            ).fetchone()
        bases = row.pop("tenant_bases")
        return (_record(row) if row["thread_id"] is not None else None), bases

    async def merge_metadata(self, tenant: str, thread_id: uuid.UUID, metadata: dict[str, Any]) -> ThreadRecord | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"""UPDATE threads SET metadata = metadata || %s, updated_at = now()
                        WHERE thread_id = %s AND tenant = %s RETURNING {_COLUMNS}""",
                    (Jsonb(metadata), thread_id, tenant),
                )
            ).fetchone()
        return _record(row) if row else None

    async def delete(self, tenant: str, thread_id: uuid.UUID) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM threads WHERE thread_id = %s AND tenant = %s", (thread_id, tenant))
            return cur.rowcount == 1

    async def search(self, tenant: str, query: ThreadQuery) -> list[ThreadRecord]:
        where, params = ["tenant = %s"], [tenant]
        if query.ids is not None:
            where.append("thread_id = ANY(%s)")
            params.append(query.ids)
        if query.metadata:
            where.append("metadata @> %s")
            params.append(Jsonb(query.metadata))
        if query.status:
            where.append("status = %s")
            params.append(query.status)
        # sort_by is a Literal checked at the API boundary; never user text here.
        order = f"{query.sort_by} {'DESC' if query.descending else 'ASC'}, thread_id"
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM threads WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s OFFSET %s",
                    (*params, query.limit, query.offset),
                )
            ).fetchall()
        return [_record(r) for r in rows]

    async def reset_stale_busy(self) -> int:
        """Threads marked busy with no run pending or running (a process died
        between the two writes) go back to idle."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE threads SET status = 'idle'
                   WHERE status = 'busy' AND NOT EXISTS (
                       SELECT 1 FROM runs r
                       WHERE r.thread_id = threads.thread_id AND r.status IN ('pending', 'running'))"""
            )
            return cur.rowcount
