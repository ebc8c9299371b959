"""The tool call ledger: what a run sent to a tool, and what came back.

A call is written ``sent`` before it leaves, and ``done`` with its result as
soon as it returns, each in its own committed transaction. The result then
reaches the thread in the tools node's checkpoint. A crash between the two
leaves a ``done`` row the checkpoint lacks: the retried run takes the result
from here, so the call is not sent again. A crash while the call was out
leaves a ``sent`` row without a result: the retried run knows the call may
have happened. That ordering is equivalent to writing the result with the
checkpoint in one transaction, for every point a process can die at.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Literal

import msgspec
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool


class LedgerEntry(msgspec.Struct, frozen=True):
    state: Literal["sent", "done"]
    arguments_hash: str
    result: dict[str, Any] | None


def arguments_hash(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()


class ToolCallLedger:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def get(self, run_id: uuid.UUID, tool_call_id: str) -> LedgerEntry | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT state, arguments_hash, result FROM tool_calls WHERE run_id = %s AND tool_call_id = %s",
                    (run_id, tool_call_id),
                )
            ).fetchone()
        return LedgerEntry(**row) if row else None

    async def sent(
        self, run_id: uuid.UUID, tool_call_id: str, thread_id: uuid.UUID, tool: str, arguments: dict[str, Any]
    ) -> None:
        """Before the call leaves. A second send of the same call (an idempotent
        tool called again after a crash) keeps its row."""
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO tool_calls (run_id, tool_call_id, thread_id, tool, arguments_hash, state)
                   VALUES (%s, %s, %s, %s, %s, 'sent')
                   ON CONFLICT (run_id, tool_call_id) DO UPDATE SET sent_at = now()""",
                (run_id, tool_call_id, thread_id, tool, arguments_hash(arguments)),
            )

    async def done(self, run_id: uuid.UUID, tool_call_id: str, result: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE tool_calls SET state = 'done', result = %s, done_at = now()
                    WHERE run_id = %s AND tool_call_id = %s""",
                (Jsonb(result), run_id, tool_call_id),
            )

    async def count(self, thread_id: uuid.UUID) -> dict[str, int]:
        """Calls of a thread by state (for tests and the admin)."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT state, count(*) AS n FROM tool_calls WHERE thread_id = %s GROUP BY state", (thread_id,)
                )
            ).fetchall()
        return {r["state"]: r["n"] for r in rows}
