"""API keys: stored as SHA-256 hashes, shown once at creation."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

import msgspec
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record

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
