"""The audit log: who created or revoked a key, created or deleted a knowledge
base or a document, changed a tenant's limits, or failed to authenticate.

An action is recorded by the store that makes the change, in the same
transaction, so it is recorded exactly once, and only when it happened. The
log holds names, ids and sizes: never a secret, a document's text or a question.
"""

from __future__ import annotations

import getpass
import uuid
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

# One failed-authentication row per source address and minute, however many
# tries it made: the count goes up in that row, so a flood cannot fill the table.
FAILED_AUTH_WINDOW_S = 60
_COLUMNS = "event_id, at, action, tenant, target, actor, actor_key_id, actor_tenant, source, detail"


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who is acting: an API key (by id and prefix, never its secret) or a user on the host."""

    name: str
    key_id: uuid.UUID | None = None
    tenant: str | None = None
    source: str | None = None

    @classmethod
    def host(cls) -> Actor:
        """The appliance's CLI, run on the host by an operator."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container's numeric user)
            user = "unknown"
        return cls(name=f"host:{user}", source="local")


class AuditEvent(msgspec.Struct, frozen=True):
    event_id: int
    at: datetime
    action: str
    tenant: str | None
    target: str | None
    actor: str
    actor_key_id: uuid.UUID | None
    actor_tenant: str | None
    source: str | None
    detail: dict[str, Any]


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    *,
    tenant: str | None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one event on ``conn``, inside the caller's transaction."""
    await conn.execute(
        """INSERT INTO audit_log (action, tenant, target, actor, actor_key_id, actor_tenant, source, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (action, tenant, target, actor.name, actor.key_id, actor.tenant, actor.source, Jsonb(detail or {})),
    )


class AuditStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def list(
        self,
        *,
        since: datetime | None = None,
        tenant: str | None = None,
        action: str | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[AuditEvent]:
        """Oldest first, from ``since`` (or the start), ``limit`` at most."""
        where, params = ["event_id > %s"], [after_id]
        if since is not None:
            where.append("at >= %s")
            params.append(since)
        if tenant is not None:
            where.append("(tenant = %s OR actor_tenant = %s)")
            params += [tenant, tenant]
        if action is not None:
            where.append("action = %s")
            params.append(action)
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY event_id LIMIT %s",
                    (*params, limit),
                )
            ).fetchall()
        return [AuditEvent(**r) for r in rows]

    async def failed_authentication(self, source: str | None, reason: str) -> None:
        """Count a failed authentication from ``source``: a new row at most once a window."""
        async with self.pool.connection() as conn, conn.transaction():
            # Serialises the read-then-write per source across processes.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 4242))", (f"auth:{source}",))
            updated = await conn.execute(
                """UPDATE audit_log
                      SET detail = jsonb_set(detail, '{attempts}', to_jsonb((detail->>'attempts')::int + 1))
                    WHERE event_id = (SELECT max(event_id) FROM audit_log
                                       WHERE action = 'auth.failed' AND source IS NOT DISTINCT FROM %s
                                         AND at > now() - %s * interval '1 second')""",
                (source, FAILED_AUTH_WINDOW_S),
            )
            if updated.rowcount == 0:
                await record(
                    conn,
                    Actor(name="unauthenticated", source=source),
                    "auth.failed",
                    tenant=None,
                    detail={"reason": reason, "attempts": 1},
                )
