"""Rate limits kept in PostgreSQL, so every process of every app host counts
the same requests and uploads: requests per minute in fixed one-minute
windows, uploads in flight as rows held while they are ingested, and each
tenant's own limits. Runs in flight are counted where runs are queued
(store/runs.py), in the transaction that queues them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record

# An upload row left by a process that died mid-ingestion stops counting after this.
UPLOAD_HOLD_S = 900
# Request windows older than this are deleted by the periodic prune.
_KEEP_WINDOWS_S = 180


class LimitSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant's limits; 0 means no limit."""

    key_requests_per_minute: int
    tenant_requests_per_minute: int
    key_runs_in_flight: int
    tenant_runs_in_flight: int
    key_uploads_in_flight: int
    tenant_uploads_in_flight: int


LIMIT_NAMES = tuple(LimitSet.__struct_fields__)


class OverLimit(Exception):
    """A limit was reached: ``name`` (one of LIMIT_NAMES), its value, and when to come back."""

    def __init__(self, name: str, limit: int, retry_after_s: int) -> None:
        super().__init__(name)
        self.name = name
        self.limit = limit
        self.retry_after_s = retry_after_s


class RequestCount(msgspec.Struct, frozen=True):
    """One request counted in its minute's window (``KeyStore.admit``)."""

    key: int
    tenant: int
    # Seconds until the window ends (when the counts start again).
    retry_after_s: int


def over(limit: int, count: int) -> bool:
    # Runs in flight are judged by this same rule in SQL, where a run is queued (store/runs.py, _QUEUE_RUN).
    return limit > 0 and count > limit


async def lock_tenant(conn: AsyncConnection, purpose: str, tenant: str) -> None:
    """Serialise one kind of admission for a tenant across processes, until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 5151))", (f"{purpose}:{tenant}",))


def check_in_flight(
    limits: LimitSet, kind: str, key_id: uuid.UUID | None, counts: dict[str, int], retry_after_s: int
) -> None:
    """OverLimit when one more ``kind`` ("runs" or "uploads") in flight would put the
    key (``counts["key_n"]``; none for the host's CLI) or the tenant (``counts["tenant_n"]``) over."""
    for scope in ("key", "tenant"):
        name = f"{scope}_{kind}_in_flight"
        if (scope == "tenant" or key_id is not None) and over(getattr(limits, name), counts[f"{scope}_n"] + 1):
            raise OverLimit(name, getattr(limits, name), retry_after_s)


async def overrides_on(conn: AsyncConnection, tenant: str) -> dict[str, int]:
    row = await (await conn.execute("SELECT limits FROM tenant_limits WHERE tenant = %s", (tenant,))).fetchone()
    return row["limits"] if row else {}


class LimitStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def overrides(self, tenant: str) -> dict[str, int]:
        async with self.pool.connection() as conn:
            return await overrides_on(conn, tenant)

    async def set_overrides(self, tenant: str, limits: dict[str, int], actor: Actor) -> dict[str, int]:
        """Replace the tenant's own limits (empty: the appliance's settings again), audited."""
        async with self.pool.connection() as conn, conn.transaction():
            before = await overrides_on(conn, tenant)
            if limits:
                await conn.execute(
                    """INSERT INTO tenant_limits (tenant, limits) VALUES (%s, %s)
                       ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits, updated_at = now()""",
                    (tenant, Jsonb(limits)),
                )
            else:
                await conn.execute("DELETE FROM tenant_limits WHERE tenant = %s", (tenant,))
            if before != limits:
                await record(
                    conn, actor, "tenant.limits_changed", tenant=tenant, detail={"before": before, "after": limits}
                )
        return limits

    @asynccontextmanager
    async def upload_slot(self, key_id: uuid.UUID | None, tenant: str, defaults: LimitSet) -> AsyncIterator[None]:
        """Hold one of the key's and the tenant's upload slots for the body of the block
        (OverLimit when there is none, by ``defaults`` and the tenant's own limits)."""
        upload_id = uuid.uuid4()
        async with self.pool.connection() as conn, conn.transaction():
            await lock_tenant(conn, "uploads", tenant)
            limits = effective(defaults, await overrides_on(conn, tenant))
            await conn.execute("DELETE FROM uploads_in_flight WHERE tenant = %s AND expires_at < now()", (tenant,))
            row = await (
                await conn.execute(
                    """SELECT count(*) AS tenant_n, count(*) FILTER (WHERE key_id = %s) AS key_n
                         FROM uploads_in_flight WHERE tenant = %s""",
                    (key_id, tenant),
                )
            ).fetchone()
            # Uploads take seconds to minutes; a few seconds is an honest guess at a free slot.
            check_in_flight(limits, "uploads", key_id, row, retry_after_s=5)
            await conn.execute(
                """INSERT INTO uploads_in_flight (upload_id, tenant, key_id, expires_at)
                   VALUES (%s, %s, %s, now() + %s * interval '1 second')""",
                (upload_id, tenant, key_id, UPLOAD_HOLD_S),
            )
        try:
            yield
        finally:
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM uploads_in_flight WHERE upload_id = %s", (upload_id,))

    async def prune(self) -> int:
        """Forget request windows that ended and upload slots that expired."""
        async with self.pool.connection() as conn:
            gone = await conn.execute(
                "DELETE FROM request_counts WHERE window_start < now() - %s * interval '1 second'",
                (_KEEP_WINDOWS_S,),
            )
            await conn.execute("DELETE FROM uploads_in_flight WHERE expires_at < now()")
        return gone.rowcount


def effective(defaults: LimitSet, overrides: dict[str, Any]) -> LimitSet:
    """The tenant's limits: its own where it has them, the appliance's settings elsewhere."""
    known = {k: v for k, v in overrides.items() if k in LIMIT_NAMES and isinstance(v, int)}
    return msgspec.structs.replace(defaults, **known) if known else defaults
