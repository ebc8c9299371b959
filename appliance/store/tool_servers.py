"""MCP servers an admin registered, with the tools each was last found to list.

A server's headers are secrets (a bearer token, say): they are read only by
the client that dials the server, never returned by ``ToolServerRecord``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.audit import Actor, record

_COLUMNS = """server_id, name, url, allowed_tools, requires_approval, idempotent, tenants, tools,
              discovered_at, discovery_error, created_at, updated_at,
              ARRAY(SELECT jsonb_object_keys(headers) ORDER BY 1) AS header_names"""


class DiscoveredTool(msgspec.Struct, frozen=True):
    """A tool as the server lists it."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


class ToolServerRecord(msgspec.Struct, frozen=True):
    server_id: uuid.UUID
    name: str
    url: str
    allowed_tools: list[str] | None
    requires_approval: list[str]
    idempotent: list[str]
    tenants: list[str]
    tools: list[DiscoveredTool]
    discovered_at: datetime | None
    discovery_error: str | None
    created_at: datetime
    updated_at: datetime
    header_names: list[str]

    def usable(self) -> list[DiscoveredTool]:
        """The tools runs may call: those listed, less those the admin did not allow."""
        allowed = self.allowed_tools
        return [t for t in self.tools if allowed is None or t.name in allowed]

    def serves(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants


class ToolServerDraft(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    allowed_tools: list[str] | None = None
    requires_approval: list[str] = msgspec.field(default_factory=list)
    idempotent: list[str] = msgspec.field(default_factory=list)
    tenants: list[str] = msgspec.field(default_factory=lambda: ["*"])


class ServerNameTaken(Exception):
    pass


def _record(row: dict[str, Any]) -> ToolServerRecord:
    return msgspec.convert(row, ToolServerRecord)


class ToolServerStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(self, draft: ToolServerDraft, actor: Actor) -> ToolServerRecord:
        server_id = uuid.uuid4()
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    row = await (
                        await conn.execute(
                            f"""INSERT INTO tool_servers (server_id, name, url, headers, allowed_tools,
                                                         requires_approval, idempotent, tenants)
                               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
                            (
                                server_id,
                                draft.name,
                                draft.url,
                                Jsonb(draft.headers),
                                draft.allowed_tools,
                                draft.requires_approval,
                                draft.idempotent,
                                draft.tenants,
                            ),
                        )  # fmt: skip
                    ).fetchone()
                    # The header names only: their values are secrets.
                    await record(
                        conn, actor, "tool_server.created", tenant=None, target=str(server_id),
                        detail={"name": draft.name, "url": draft.url, "headers": sorted(draft.headers)},
                    )  # fmt: skip
            except UniqueViolation:
                raise ServerNameTaken(draft.name) from None
        return _record(row)

    async def list(self) -> list[ToolServerRecord]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(f"SELECT {_COLUMNS} FROM tool_servers ORDER BY name")).fetchall()
        return [_record(r) for r in rows]

    async def get(self, ref: str) -> ToolServerRecord | None:
        """By id or by name."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM tool_servers WHERE server_id::text = %s OR name = %s", (ref, ref)
                )
            ).fetchone()
        return _record(row) if row else None

    async def dialling(self, server_id: uuid.UUID) -> tuple[str, dict[str, str]] | None:
        """What a client needs to reach the server: its URL and headers (None: gone)."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT url, headers FROM tool_servers WHERE server_id = %s", (server_id,))
            ).fetchone()
        return (row["url"], dict(row["headers"])) if row else None

    async def discovered(
        self, server_id: uuid.UUID, tools: list[DiscoveredTool] | None, error: str | None
    ) -> ToolServerRecord | None:
        """What the server listed (``tools``), or why it could not be asked (``error``;
        the tools found before are kept, so a server that is down a moment keeps its tools)."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"""UPDATE tool_servers
                           SET tools = coalesce(%(tools)s, tools), discovery_error = %(error)s,
                               discovered_at = CASE WHEN %(found)s THEN now() ELSE discovered_at END,
                               updated_at = now()
                         WHERE server_id = %(id)s RETURNING {_COLUMNS}""",
                    {
                        "tools": Jsonb(msgspec.to_builtins(tools)) if tools is not None else None,
                        "error": error,
                        "found": tools is not None,
                        "id": server_id,
                    },
                )
            ).fetchone()
        return _record(row) if row else None

    async def delete(self, server_id: uuid.UUID, actor: Actor) -> bool:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                row = await (
                    await conn.execute("DELETE FROM tool_servers WHERE server_id = %s RETURNING name", (server_id,))
                ).fetchone()
                if row is not None:
                    await record(
                        conn, actor, "tool_server.deleted", tenant=None, target=str(server_id),
                        detail={"name": row["name"]},
                    )  # fmt: skip
        return row is not None
