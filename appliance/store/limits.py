"""Rate limits kept in PostgreSQL, so every process of every app host counts
the same requests and uploads: requests per minute in fixed one-minute
windows, uploads in flight as rows held while they are ingested, and each
tenant's own limits. What is in flight, runs and uploads, is judged by one
rule in PostgreSQL (``in_flight_check``), in the transaction that queues the
run (store/runs.py) or takes the upload's slot, under the lock of the limit
it counts against (``in_flight_lock``).
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
from appliance.store.database import pipelined_transaction

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
    # What is in flight is judged by this same rule in SQL (``in_flight_check``).
    return limit > 0 and count > limit


def _caps(kind: str) -> str:
    """SQL: the CTEs ``own`` (the tenant's own limits) and ``caps``, one row:
    ``key_cap`` and ``tenant_cap``, the limits of one more ``kind`` in flight
    (the tenant's own before %(key_cap)s and %(tenant_cap)s; 0: none)."""
    key_name, tenant_name = f"key_{kind}_in_flight", f"tenant_{kind}_in_flight"
    return f"""own AS (SELECT limits FROM tenant_limits WHERE tenant = %(tenant)s),
caps AS (
    SELECT coalesce((SELECT (limits ->> '{key_name}')::int FROM own
                     WHERE jsonb_typeof(limits -> '{key_name}') = 'number'), %(key_cap)s) AS key_cap,
           coalesce((SELECT (limits ->> '{tenant_name}')::int FROM own
                     WHERE jsonb_typeof(limits -> '{tenant_name}') = 'number'), %(tenant_cap)s) AS tenant_cap)"""


def in_flight_locks(kind: str, tenant: str, key: uuid.UUID | None) -> dict[str, str]:
    """The names of the locks ``in_flight_lock`` chooses between, as its parameters."""
    # A tenant's name has no ':' (services.keys.TENANT_PATTERN), so the two never meet.
    return {"tenant_lock": f"{kind}:{tenant}", "key_lock": f"{kind}:key:{key}"}


def in_flight_lock(kind: str) -> str:
    """SQL: the lock that lets one more ``kind`` ("runs" or "uploads") be
    counted and taken by one process at a time, until the transaction ends,
    only as wide as the limits in force need: the tenant's when its limit is
    on, else the key's when the key's is on, else none, as nothing is counted
    (so a tenant without limits does not queue its runs one at a time). A
    limit switched on while runs are queued holds from the first run queued
    under it. Parameters: ``in_flight_check``'s and ``in_flight_locks``'."""
    return f"""WITH {_caps(kind)}
SELECT pg_advisory_xact_lock(hashtextextended(
           CASE WHEN tenant_cap > 0 THEN %(tenant_lock)s ELSE %(key_lock)s END, 5151))
  FROM caps
 WHERE tenant_cap > 0 OR (%(key)s::uuid IS NOT NULL AND key_cap > 0)"""


def in_flight_check(kind: str, in_flight: str) -> str:
    """SQL: the CTEs of one more ``kind`` ("runs" or "uploads") in flight, ending
    in ``over_limit``, one row: ``name``, the limit it would pass (NULL: none),
    and ``cap``, that limit's value. ``in_flight`` is the FROM and WHERE of
    the tenant's rows in flight (a ``key_id`` column names their key). Judged
    by ``over``'s rule, the tenant's own limits (``tenant_limits``) before
    those passed; counted only as far as each limit (not at all when off), so
    a check costs the limit, not what is in flight. Its parameters: %(tenant)s,
    %(key)s (None: the host's CLI, which no key limit counts), %(key_cap)s and
    %(tenant_cap)s. To be run after ``in_flight_lock``, in a statement of its
    own snapshot, so two processes cannot both take the last slot."""
    key_name, tenant_name = f"key_{kind}_in_flight", f"tenant_{kind}_in_flight"
    return f"""{_caps(kind)},
counted AS (
    SELECT (SELECT count(*) FROM (SELECT 1 {in_flight} LIMIT (SELECT tenant_cap FROM caps)) AS t) AS tenant_n,
           (SELECT count(*) FROM (SELECT 1 {in_flight} AND key_id = %(key)s
                                  LIMIT (SELECT key_cap FROM caps)) AS k) AS key_n),
over_limit AS (
    SELECT CASE WHEN %(key)s::uuid IS NOT NULL AND key_cap > 0 AND key_n >= key_cap THEN '{key_name}'
                WHEN tenant_cap > 0 AND tenant_n >= tenant_cap THEN '{tenant_name}' END AS name,
           CASE WHEN %(key)s::uuid IS NOT NULL AND key_cap > 0 AND key_n >= key_cap THEN key_cap
                ELSE tenant_cap END AS cap
      FROM caps, counted)"""


async def overrides_on(conn: AsyncConnection, tenant: str) -> dict[str, int]:
    row = await (await conn.execute("SELECT limits FROM tenant_limits WHERE tenant = %s", (tenant,))).fetchone()
    return row["limits"] if row else {}


_LOCK_UPLOADS = in_flight_lock("uploads")
# An upload slot taken, unless one more upload would pass a limit.
_TAKE_UPLOAD_SLOT = f"""
WITH {in_flight_check("uploads", "FROM uploads_in_flight WHERE tenant = %(tenant)s")},
taken AS (
    INSERT INTO uploads_in_flight (upload_id, tenant, key_id, expires_at)
    SELECT %(upload)s, %(tenant)s, %(key)s, now() + %(hold_s)s * interval '1 second'
      FROM over_limit WHERE name IS NULL)
SELECT name, cap FROM over_limit"""


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
        (OverLimit when there is none, by ``defaults`` and the tenant's own limits).
        Taken in one wait on PostgreSQL, its lock held only while PostgreSQL decides."""
        upload_id = uuid.uuid4()
        params = {
            "upload": upload_id,
            "tenant": tenant,
            "key": key_id,
            "key_cap": defaults.key_uploads_in_flight,
            "tenant_cap": defaults.tenant_uploads_in_flight,
            "hold_s": UPLOAD_HOLD_S,
        }
        async with self.pool.connection() as conn:
            async with pipelined_transaction(conn):
                await conn.execute(_LOCK_UPLOADS, params | in_flight_locks("uploads", tenant, key_id))
                await conn.execute("DELETE FROM uploads_in_flight WHERE tenant = %s AND expires_at < now()", (tenant,))
                taken = await conn.execute(_TAKE_UPLOAD_SLOT, params)
            row = await taken.fetchone()
        if row["name"] is not None:
            # Uploads take seconds to minutes; a few seconds is an honest guess at a free slot.
            raise OverLimit(row["name"], row["cap"], 5)
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
    # What is in flight takes the tenant's own limits the same way, in SQL (``in_flight_check``).
    known = {k: v for k, v in overrides.items() if k in LIMIT_NAMES and isinstance(v, int)}
    return msgspec.structs.replace(defaults, **known) if known else defaults
