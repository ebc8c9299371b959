"""LangGraph's PostgreSQL checkpointer, adapted to a connection pool.

``AsyncPostgresSaver`` takes one asyncio lock around every call, even when it
is given a pool (langgraph issue 7259), so all threads' reads and writes queue
behind each other. With a pool each call gets its own connection, so the lock
guards nothing; ``PooledPostgresSaver`` skips it (bench/checkpointer_lock.py
measures the difference).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


class PooledPostgresSaver(AsyncPostgresSaver):
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
