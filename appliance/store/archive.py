"""The message archive: a conversation's messages that were folded out of its
checkpointed window, so that a checkpoint (and the work of every turn) stays
the size of the window however long the conversation grows.

A batch is written once and never changed. Each names the batch before it
(``parent``) and says where its first message sits in the whole conversation
(``first_index``); the state names the newest (``archive_head``). A fork from
an old checkpoint therefore reads the archive as it was then, and a batch left
by a run that was rolled back is simply named by no checkpoint.
The saver copies and deletes a thread's batches with its checkpoints
(``store/checkpointer.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg_pool import AsyncConnectionPool

# The chain from the head down to the first batch holding ``start``, ids only,
# then the bytes of the batches that overlap [start, stop).
_READ = """
WITH RECURSIVE chain AS (
    SELECT batch_id, parent, first_index, size FROM message_archive
    WHERE thread_id = %(thread)s AND batch_id = %(head)s
    UNION ALL
    SELECT a.batch_id, a.parent, a.first_index, a.size
    FROM chain c JOIN message_archive a ON a.thread_id = %(thread)s AND a.batch_id = c.parent
    WHERE c.first_index > %(start)s
)
SELECT a.first_index, a.type, a.messages
FROM chain c JOIN message_archive a ON a.thread_id = %(thread)s AND a.batch_id = c.batch_id
WHERE c.first_index < %(stop)s AND c.first_index + c.size > %(start)s
ORDER BY c.first_index
"""


class ArchiveBroken(Exception):
    """A checkpoint names archived messages that are not there (restored from a partial backup)."""


class MessageArchive:
    def __init__(self, pool: AsyncConnectionPool, serde: SerializerProtocol) -> None:
        self.pool = pool
        self.serde = serde

    async def append(
        self, thread_id: str, parent: str | None, first_index: int, messages: Sequence[BaseMessage]
    ) -> str:
        """Archive ``messages`` (the conversation's ``first_index``-th on) after
        the batch ``parent``; returns the new batch's id, the new head."""
        batch_id = uuid.uuid4()
        kind, payload = self.serde.dumps_typed(list(messages))
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO message_archive (thread_id, batch_id, parent, first_index, size, type, messages)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (thread_id, batch_id, parent, first_index, len(messages), kind, payload),
            )
        return str(batch_id)

    async def read(
        self, thread_id: str, head: str | None, start: int = 0, stop: int | None = None
    ) -> list[BaseMessage]:
        """The archived messages ``start`` to ``stop`` (positions in the whole
        conversation), as the archive was when ``head`` was its newest batch."""
        if head is None or (stop is not None and stop <= start):
            return []
        bounds = {"start": start, "stop": stop if stop is not None else 2**31 - 1}
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(_READ, {"thread": thread_id, "head": head, **bounds})).fetchall()
        if not rows or rows[0]["first_index"] > start:
            raise ArchiveBroken(f"thread {thread_id}: archived messages from {start} are missing")
        messages: list[BaseMessage] = []
        for row in rows:
            messages.extend(self.serde.loads_typed((row["type"], bytes(row["messages"]))))
        begin = start - rows[0]["first_index"]
        return messages[begin : begin + (stop - start)] if stop is not None else messages[begin:]
