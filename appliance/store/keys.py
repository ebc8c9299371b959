"""API keys: stored as SHA-256 hashes, shown once at creation. A request's
key is looked up and the request counted against its limits in one statement."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

import msgspec
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record
from appliance.store.database import UNFLUSHED_COMMIT
from appliance.store.limits import RequestCount

KEY_PREFIX = "apk_"
_COLUMNS = "key_id, tenant, name, prefix, is_admin, created_at, revoked_at"


class ApiKey(msgspec.Struct, frozen=True):
    key_id: uuid.UUID
    tenant: str
    name: str
    prefix: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None = None


class Admission(msgspec.Struct, frozen=True):
    """A live key, with the request counted for it and for its tenant in this
    minute's window, and the tenant's own limits (none: the appliance's)."""

    key: ApiKey
    requests: RequestCount
    overrides: dict[str, int]


# The key of a hash, unless revoked; for it, one request counted for the key and
# one for its tenant, with the tenant's own limits: one round trip a request.
_ADMIT = f"""WITH key AS (SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %(hash)s AND revoked_at IS NULL),
counted AS (
    INSERT INTO request_counts AS c (scope, window_start, n)
    SELECT scope, date_trunc('minute', now()), 1
      FROM key CROSS JOIN LATERAL (VALUES ('key:' || key.key_id::text), ('tenant:' || key.tenant)) AS s(scope)
    ON CONFLICT (scope, window_start) DO UPDATE SET n = c.n + 1
    RETURNING scope, n)
SELECT key.*,
       (SELECT n FROM counted WHERE scope = 'key:' || key.key_id::text) AS key_n,
       (SELECT n FROM counted WHERE scope = 'tenant:' || key.tenant) AS tenant_n,
       ceil(extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now()))::int AS retry_after_s,
       (SELECT limits FROM tenant_limits WHERE tenant = key.tenant) AS limits,
       -- This statement's own commit: a count lost in a crash is harmless,
       -- waiting for the WAL to reach the disk on every request is not.
       {UNFLUSHED_COMMIT} AS unflushed
FROM key"""


class LastAdminKey(Exception):
    """The key is the last active admin key: revoking it would leave no admin on the API."""


class OwnKey(Exception):
    """The key would revoke itself."""


def _described(key: ApiKey) -> dict[str, object]:
    return {"name": key.name, "prefix": key.prefix, "admin": key.is_admin}


def hash_key(secret: str) -> bytes:
    # Keys are 256-bit random strings, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).digest()


class KeyStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(self, tenant: str, *, name: str = "", is_admin: bool = False, actor: Actor) -> tuple[ApiKey, str]:
        """Return the stored key and its secret, which is not kept anywhere (nor audited)."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    f"""INSERT INTO api_keys (key_id, tenant, name, prefix, key_hash, is_admin)
                        VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
                    (uuid.uuid4(), tenant, name, secret[:12], hash_key(secret), is_admin),
                )
            ).fetchone()
            key = ApiKey(**row)
            await record(conn, actor, "key.created", tenant=tenant, target=str(key.key_id), detail=_described(key))
        return key, secret

    async def authenticate(self, secret: str) -> ApiKey | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                    (hash_key(secret),),
                )
            ).fetchone()
        return ApiKey(**row) if row else None

    async def admit(self, secret: str) -> Admission | None:
        """The live key of ``secret`` with this request counted (None: unknown or revoked, nothing counted)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(_ADMIT, {"hash": hash_key(secret)})).fetchone()
        if row is None:
            return None
        key = ApiKey(**{name: row[name] for name in ApiKey.__struct_fields__})
        requests = RequestCount(row["key_n"], row["tenant_n"], max(1, row["retry_after_s"]))
        return Admission(key, requests, row["limits"] or {})

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        query, params = f"SELECT {_COLUMNS} FROM api_keys", ()
        if tenant is not None:
            query, params = query + " WHERE tenant = %s", (tenant,)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query + " ORDER BY created_at", params)).fetchall()
        return [ApiKey(**r) for r in rows]

    async def revoke(self, key_id: uuid.UUID, actor: Actor) -> ApiKey | None:
        """Revoke the key (None: no such key); LastAdminKey when it is the last
        active admin key, decided under a lock on every active admin key so two
        admins revoking each other at once cannot both succeed; OwnKey when the
        actor is the key itself."""
        async with self.pool.connection() as conn, conn.transaction():
            admins = await (
                await conn.execute(
                    "SELECT key_id FROM api_keys WHERE is_admin AND revoked_at IS NULL ORDER BY key_id FOR UPDATE"
                )
            ).fetchall()
            if [r["key_id"] for r in admins] == [key_id]:
                raise LastAdminKey(key_id)
            if actor.key_id == key_id:
                raise OwnKey(key_id)
            row = await (
                await conn.execute(
                    f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                        WHERE key_id = %s RETURNING {_COLUMNS}, revoked_at = now() AS now_revoked""",
                    (key_id,),
                )
            ).fetchone()
            if row is None:
                return None
            now_revoked = row.pop("now_revoked")
            key = ApiKey(**row)
            if now_revoked:  # revoking a revoked key again changes nothing, and is not recorded again
                await record(conn, actor, "key.revoked", tenant=key.tenant, target=str(key_id), detail=_described(key))
        return key

    async def count(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM api_keys")).fetchone()
        return row["n"]
