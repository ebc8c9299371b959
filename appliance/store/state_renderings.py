"""The latest state of each thread as GET /threads/{id}/state answers it, kept
with the checkpoint it renders. A read of a long thread sends it again while
that checkpoint is still the thread's latest, instead of rebuilding the window
from the checkpoint's writes and encoding it. Whatever changes the state
(a turn, an update, a fork, a rollback) makes another checkpoint the latest,
so a rendering is never served for a state it does not show."""

from __future__ import annotations

import logging
import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# The rendering's shape (engine.jsonable.thread_state): a rendering of another is not served.
FORMAT = 1


class StateRenderings:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def latest(self, thread_ids: list[uuid.UUID], tenant: str | None = None) -> dict[uuid.UUID, bytes | None]:
        """Each thread's rendering of its latest checkpoint (None: none is kept
        for it), in one round trip; a thread missing (or, with ``tenant``, not
        the tenant's) is left out. A checkpoint with pending writes (a step
        under way, an interrupt) is never served from a rendering."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """SELECT t.thread_id, r.body
                       FROM threads t
                       LEFT JOIN LATERAL (
                           SELECT checkpoint_id FROM checkpoints
                           WHERE thread_id = t.thread_id::text AND checkpoint_ns = ''
                           ORDER BY checkpoint_id DESC LIMIT 1) c ON true
                       LEFT JOIN thread_state_renderings r
                         ON r.thread_id = t.thread_id AND r.checkpoint_id = c.checkpoint_id AND r.format = %s
                        AND NOT EXISTS (SELECT 1 FROM checkpoint_writes w
                                        WHERE w.thread_id = t.thread_id::text AND w.checkpoint_ns = ''
                                          AND w.checkpoint_id = c.checkpoint_id)
                       WHERE t.thread_id = ANY(%s) AND (%s::text IS NULL OR t.tenant = %s)""",
                    (FORMAT, thread_ids, tenant, tenant),
                )
            ).fetchall()
        return {r["thread_id"]: bytes(r["body"]) if r["body"] is not None else None for r in rows}

    async def keep(self, thread_id: uuid.UUID, checkpoint_id: str, body: bytes) -> None:
        """Keep ``body`` as the rendering of ``checkpoint_id``. A read that cannot
        keep it (the thread deleted meanwhile, the disk full) still answers."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    """INSERT INTO thread_state_renderings (thread_id, checkpoint_id, format, body)
                       VALUES (%s, %s, %s, %s)
                       ON CONFLICT (thread_id) DO UPDATE
                       SET checkpoint_id = EXCLUDED.checkpoint_id, format = EXCLUDED.format, body = EXCLUDED.body""",
                    (thread_id, checkpoint_id, FORMAT, body),
                )
        except psycopg.Error as exc:
            log.warning("could not keep the rendered state of thread %s: %r", thread_id, exc)
