"""One run at a time per thread, across every process that shares the database.

Waiters in this process queue on an asyncio lock first, so a burst of requests
on one thread holds one database connection, not one each. The holder then
takes a PostgreSQL advisory lock on a dedicated connection, and on that same
connection marks the thread busy (checking its owner) and, at the end, idle
again while unlocking: three round trips for the whole claim. If the process
dies, PostgreSQL drops the session and the lock with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool


class ThreadBusy(Exception):
    pass


class ThreadMissing(Exception):
    pass


class ThreadLocks:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._local: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, thread_id: uuid.UUID, tenant: str, *, wait: bool) -> AsyncIterator[None]:
        """Hold the thread (marked busy) for a run. Raises ThreadBusy when
        ``wait`` is false and another run has it, ThreadMissing when the
        tenant has no such thread."""
        lock, users = self._local.get(thread_id, (asyncio.Lock(), 0))
        self._local[thread_id] = (lock, users + 1)
        try:
            if not wait and lock.locked():
                raise ThreadBusy(str(thread_id))
            async with lock, self._claim(thread_id, tenant, wait=wait):
                yield
        finally:
            lock, users = self._local[thread_id]
            if users == 1:
                del self._local[thread_id]
            else:
                self._local[thread_id] = (lock, users - 1)

    @asynccontextmanager
    async def _claim(self, thread_id: uuid.UUID, tenant: str, *, wait: bool) -> AsyncIterator[None]:
        async with self.pool.connection() as conn:
            if wait:
                await conn.execute("SELECT pg_advisory_lock(thread_lock_key(%s))", (thread_id,))
            else:
                row = await (
                    await conn.execute("SELECT pg_try_advisory_lock(thread_lock_key(%s)) AS ok", (thread_id,))
                ).fetchone()
                if not row["ok"]:
                    raise ThreadBusy(str(thread_id))
            try:
                claimed = await (
                    await conn.execute(
                        """UPDATE threads SET status = 'busy', updated_at = now()
                           WHERE thread_id = %s AND tenant = %s RETURNING thread_id""",
                        (thread_id, tenant),
                    )
                ).fetchone()
                if claimed is None:
                    raise ThreadMissing(str(thread_id))
                yield
            finally:
                try:
                    await asyncio.shield(
                        conn.execute(
                            """WITH idle AS (
                                   UPDATE threads SET status = 'idle', updated_at = now()
                                   WHERE thread_id = %(t)s AND status = 'busy')
                               SELECT pg_advisory_unlock(thread_lock_key(%(t)s))""",
                            {"t": thread_id},
                        )
                    )
                except BaseException:
                    # Never hand a connection that may still hold the lock back to the pool.
                    await conn.close()
                    raise
