"""LangGraph's PostgreSQL checkpointer, adapted to a connection pool.

``AsyncPostgresSaver`` takes one asyncio lock around every call, even when it
is given a pool (langgraph issue 7259), so all threads' reads and writes queue
behind each other. With a pool each call gets its own connection, so the lock
guards nothing; ``PooledPostgresSaver`` skips it (bench/checkpointer_lock.py
measures the difference).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from appliance.store.migrations import schema_lock


def thread_config(thread_id: uuid.UUID, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The config that addresses a thread's checkpoints (its latest, or ``checkpoint_id``)."""
    configurable: dict[str, Any] = {"thread_id": str(thread_id)}
    if checkpoint_id:
        configurable |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {"configurable": configurable}


class PooledPostgresSaver(AsyncPostgresSaver):
    async def setup(self) -> None:
        """LangGraph's own migrations, under the appliance's schema lock: without
        it two app hosts starting together race on CREATE TABLE (the multi-host
        droplet test saw one of them fail)."""
        if not isinstance(self.conn, AsyncConnectionPool):
            return await super().setup()
        async with schema_lock(self.conn):
            await super().setup()

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def ahas_run(self, thread_id: str, run_id: str) -> bool:
        """Whether a run has written any checkpoint (a retried run goes on from there)."""
        async with self.conn.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT 1 FROM checkpoints WHERE thread_id = %s AND metadata->>'run_id' = %s LIMIT 1",
                    (thread_id, run_id),
                )
            ).fetchone()
        return row is not None

    async def acopy_thread(self, source: str, target: str) -> None:
        """Every checkpoint, blob and pending write of one thread, under another id."""
        async with self.conn.connection() as conn, conn.transaction():
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                rows = await (
                    await conn.execute(
                        """SELECT column_name FROM information_schema.columns
                           WHERE table_schema = current_schema() AND table_name = %s AND column_name <> 'thread_id'
                           ORDER BY ordinal_position""",
                        (table,),
                    )
                ).fetchall()
                columns = ", ".join(f'"{r["column_name"]}"' for r in rows)
                await conn.execute(
                    f"INSERT INTO {table} (thread_id, {columns}) "
                    f"SELECT %s, {columns} FROM {table} WHERE thread_id = %s",
                    (target, source),
                )

    async def adelete_run(self, thread_id: str, run_id: str) -> int:
        """Remove every checkpoint a run wrote (a failed turn leaves nothing
        half-written behind). Returns how many checkpoints were removed."""
        async with self.conn.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """DELETE FROM checkpoints
                   WHERE thread_id = %(t)s AND metadata->>'run_id' = %(r)s
                   RETURNING checkpoint_ns, checkpoint_id""",
                {"t": thread_id, "r": run_id},
            )
            removed = await cur.fetchall()
            if not removed:
                return 0
            await conn.execute(
                """DELETE FROM checkpoint_writes
                   WHERE thread_id = %s AND checkpoint_id = ANY(%s)""",
                (thread_id, [row["checkpoint_id"] for row in removed]),
            )
            # Channel values only the removed checkpoints pointed at.
            await conn.execute(
                """DELETE FROM checkpoint_blobs b
                   WHERE b.thread_id = %s AND NOT EXISTS (
                       SELECT 1 FROM checkpoints c
                       WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
                         AND c.checkpoint->'channel_versions'->>b.channel = b.version)""",
                (thread_id,),
            )
            return len(removed)
