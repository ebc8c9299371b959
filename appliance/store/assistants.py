"""Assistants, as rows: each one's current version in ``assistants``, every
version ever made, whole, in ``assistant_versions``.

A change is a new version, made in one transaction under a lock on the
assistant's row, so two changes at once make two versions, never one lost;
pinning an older version only moves the pointer. Names are unique per tenant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record

SortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]

_CURRENT = """
    SELECT a.assistant_id, v.graph_id, v.name, v.description, v.config, v.context, v.metadata,
           a.version, a.created_at, a.updated_at
      FROM assistants a JOIN assistant_versions v ON v.assistant_id = a.assistant_id AND v.version = a.version
"""
_VERSION = """
    SELECT v.assistant_id, v.graph_id, v.name, v.description, v.config, v.context, v.metadata,
           v.version, v.created_at, v.created_at AS updated_at
      FROM assistant_versions v JOIN assistants a ON a.assistant_id = v.assistant_id
"""


class AssistantRecord(msgspec.Struct, frozen=True):
    """An assistant at one version, as the Agent Server shows one."""

    assistant_id: uuid.UUID
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


class AssistantDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What a version holds, already checked by the service."""

    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class AssistantQuery(msgspec.Struct, frozen=True, kw_only=True):
    graph_id: str | None = None
    name: str | None = None  # a case-insensitive part of the name
    metadata: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    sort_by: SortBy = "created_at"
    descending: bool = True


class AssistantExists(Exception):
    """The id is taken (by this tenant: ``record`` is it)."""

    def __init__(self, existing: AssistantRecord | None) -> None:
        self.existing = existing


class NameTaken(Exception):
    pass


def _record(row: dict[str, Any]) -> AssistantRecord:
    return AssistantRecord(**row)


def _described(draft: AssistantDraft, version: int) -> dict[str, Any]:
    return {"name": draft.name, "version": version, "context_keys": sorted(draft.context)}


class AssistantStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(
        self, tenant: str, assistant_id: uuid.UUID, draft: AssistantDraft, actor: Actor
    ) -> AssistantRecord:
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    inserted = await (
                        await conn.execute(
                            """INSERT INTO assistants (assistant_id, tenant, graph_id, name, version)
                               VALUES (%s, %s, %s, %s, 1) ON CONFLICT (assistant_id) DO NOTHING
                               RETURNING assistant_id""",
                            (assistant_id, tenant, draft.graph_id, draft.name),
                        )
                    ).fetchone()
                    if inserted is None:
                        raise AssistantExists(await self._current(conn, tenant, assistant_id))
                    await self._add_version(conn, assistant_id, 1, draft)
                    await record(
                        conn, actor, "assistant.created", tenant=tenant, target=str(assistant_id),
                        detail=_described(draft, 1),
                    )  # fmt: skip
                    return await self._current(conn, tenant, assistant_id)
            except UniqueViolation:
                raise NameTaken(draft.name) from None

    async def get(self, tenant: str, assistant_id: uuid.UUID) -> AssistantRecord | None:
        async with self.pool.connection() as conn:
            return await self._current(conn, tenant, assistant_id)

    async def named(self, tenant: str, name: str) -> AssistantRecord | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(f"{_CURRENT} WHERE a.tenant = %s AND a.name = %s", (tenant, name))
            ).fetchone()
        return _record(row) if row else None

    async def update(self, tenant: str, assistant_id: uuid.UUID, change: Any, actor: Actor) -> AssistantRecord | None:
        """A new version: ``change(current) -> AssistantDraft``, under the row's lock. None: not the tenant's."""
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    locked = await (
                        await conn.execute(
                            "SELECT 1 FROM assistants WHERE assistant_id = %s AND tenant = %s FOR UPDATE",
                            (assistant_id, tenant),
                        )
                    ).fetchone()
                    if locked is None:
                        return None
                    current = await self._current(conn, tenant, assistant_id)
                    draft = change(current)
                    top = await (
                        await conn.execute(
                            "SELECT max(version) AS v FROM assistant_versions WHERE assistant_id = %s",
                            (assistant_id,),
                        )
                    ).fetchone()
                    version = top["v"] + 1
                    await self._add_version(conn, assistant_id, version, draft)
                    await self._point(conn, assistant_id, version, draft)
                    await record(
                        conn, actor, "assistant.updated", tenant=tenant, target=str(assistant_id),
                        detail=_described(draft, version),
                    )  # fmt: skip
                    return await self._current(conn, tenant, assistant_id)
            except UniqueViolation:
                raise NameTaken(draft.name) from None

    async def pin(self, tenant: str, assistant_id: uuid.UUID, version: int, actor: Actor) -> AssistantRecord | None:
        """Make ``version`` the current one. None: no such assistant or version of the tenant's."""
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    row = await (
                        await conn.execute(
                            f"{_VERSION} WHERE a.tenant = %s AND v.assistant_id = %s AND v.version = %s "
                            "FOR UPDATE OF a",
                            (tenant, assistant_id, version),
                        )
                    ).fetchone()
                    if row is None:
                        return None
                    draft = AssistantDraft(graph_id=row["graph_id"], name=row["name"])
                    await self._point(conn, assistant_id, version, draft)
                    await record(
                        conn, actor, "assistant.pinned", tenant=tenant, target=str(assistant_id),
                        detail={"name": row["name"], "version": version},
                    )  # fmt: skip
                    return await self._current(conn, tenant, assistant_id)
            except UniqueViolation:
                raise NameTaken(row["name"]) from None

    async def version(self, tenant: str, assistant_id: uuid.UUID, version: int) -> AssistantRecord | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"{_VERSION} WHERE a.tenant = %s AND v.assistant_id = %s AND v.version = %s",
                    (tenant, assistant_id, version),
                )
            ).fetchone()
        return _record(row) if row else None

    async def versions(
        self, tenant: str, assistant_id: uuid.UUID, metadata: dict[str, Any] | None, limit: int, offset: int
    ) -> list[AssistantRecord]:
        where, params = ["a.tenant = %s", "v.assistant_id = %s"], [tenant, assistant_id]
        if metadata:
            where.append("v.metadata @> %s")
            params.append(Jsonb(metadata))
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"{_VERSION} WHERE {' AND '.join(where)} ORDER BY v.version DESC LIMIT %s OFFSET %s",
                    (*params, limit, offset),
                )
            ).fetchall()
        return [_record(r) for r in rows]

    async def delete(self, tenant: str, assistant_id: uuid.UUID, actor: Actor) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "DELETE FROM assistants WHERE assistant_id = %s AND tenant = %s RETURNING name",
                    (assistant_id, tenant),
                )
            ).fetchone()
            if row is not None:
                await record(
                    conn, actor, "assistant.deleted", tenant=tenant, target=str(assistant_id),
                    detail={"name": row["name"]},
                )  # fmt: skip
            return row is not None

    async def search(self, tenant: str, query: AssistantQuery) -> list[AssistantRecord]:
        where, params = self._where(tenant, query)
        # sort_by is a Literal checked at the API boundary; never user text here.
        column = "a.assistant_id" if query.sort_by == "assistant_id" else f"a.{query.sort_by}"
        if query.sort_by in ("graph_id", "name"):
            column = f"v.{query.sort_by}"
        order = f"{column} {'DESC' if query.descending else 'ASC'}, a.assistant_id"
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"{_CURRENT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s OFFSET %s",
                    (*params, query.limit, query.offset),
                )
            ).fetchall()
        return [_record(r) for r in rows]

    async def count(self, tenant: str, query: AssistantQuery) -> int:
        where, params = self._where(tenant, query)
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(f"SELECT count(*) AS n FROM ({_CURRENT} WHERE {' AND '.join(where)}) found", params)
            ).fetchone()
        return row["n"]

    @staticmethod
    def _where(tenant: str, query: AssistantQuery) -> tuple[list[str], list[Any]]:
        where, params = ["a.tenant = %s"], [tenant]
        if query.graph_id is not None:
            where.append("v.graph_id = %s")
            params.append(query.graph_id)
        if query.name:
            where.append("strpos(lower(v.name), lower(%s)) > 0")
            params.append(query.name)
        if query.metadata:
            where.append("v.metadata @> %s")
            params.append(Jsonb(query.metadata))
        return where, params

    async def _current(self, conn: AsyncConnection, tenant: str, assistant_id: uuid.UUID) -> AssistantRecord | None:
        row = await (
            await conn.execute(f"{_CURRENT} WHERE a.tenant = %s AND a.assistant_id = %s", (tenant, assistant_id))
        ).fetchone()
        return _record(row) if row else None

    @staticmethod
    async def _add_version(conn: AsyncConnection, assistant_id: uuid.UUID, version: int, draft: AssistantDraft) -> None:
        await conn.execute(
            """INSERT INTO assistant_versions
                   (assistant_id, version, graph_id, name, description, config, context, metadata)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                assistant_id,
                version,
                draft.graph_id,
                draft.name,
                draft.description,
                Jsonb(draft.config),
                Jsonb(draft.context),
                Jsonb(draft.metadata),
            ),
        )

    @staticmethod
    async def _point(conn: AsyncConnection, assistant_id: uuid.UUID, version: int, draft: AssistantDraft) -> None:
        await conn.execute(
            "UPDATE assistants SET version = %s, name = %s, graph_id = %s, updated_at = now() WHERE assistant_id = %s",
            (version, draft.name, draft.graph_id, assistant_id),
        )
