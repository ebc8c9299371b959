"""One run at a time per thread, across every process that shares the database.

Waiters in this process queue on an asyncio lock first, so a burst of requests
on one thread holds one database connection, not one each. The holder then
takes a PostgreSQL advisory lock on a dedicated connection; if the process
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


class ThreadLocks:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._local: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, thread_id: uuid.UUID, *, wait: bool) -> AsyncIterator[None]:
        lock, users = self._local.get(thread_id, (asyncio.Lock(), 0))
        self._local[thread_id] = (lock, users + 1)
        try:
            if not wait and lock.locked():
                raise ThreadBusy(str(thread_id))
            async with lock, self._advisory(thread_id, wait=wait):
                yield
        finally:
            lock, users = self._local[thread_id]
            if users == 1:
                del self._local[thread_id]
            else:
                self._local[thread_id] = (lock, users - 1)

    @asynccontextmanager
    async def _advisory(self, thread_id: uuid.UUID, *, wait: bool) -> AsyncIterator[None]:
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
                yield
            finally:
                try:
                    await asyncio.shield(
                        conn.execute("SELECT pg_advisory_unlock(thread_lock_key(%s))", (thread_id,))
                    )
                except BaseException:
                    # Never hand a connection that may still hold the lock back to the pool.
                    await conn.close()
                    raise
