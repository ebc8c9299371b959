"""Tool servers as admins manage them: registered, listed, refreshed, removed,
and checked for /readyz."""

from __future__ import annotations

import asyncio
import re

from appliance.errors import Conflict, Invalid, NotFound
from appliance.store.audit import Actor
from appliance.store.tool_servers import ServerNameTaken, ToolServerDraft, ToolServerRecord, ToolServerStore
from appliance.tools.spec import BUILT_IN
from appliance.tools.toolbox import Toolbox

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"


class ToolServerService:
    def __init__(self, store: ToolServerStore, toolbox: Toolbox) -> None:
        self.store = store
        self.toolbox = toolbox

    async def register(self, draft: ToolServerDraft, actor: Actor) -> ToolServerRecord:
        """Checked (name, URL inside the allowed networks), stored, then asked for
        its tools. A server that does not answer yet is kept, with the reason."""
        if not re.fullmatch(NAME_PATTERN, draft.name) or draft.name in BUILT_IN:
            raise Invalid(
                f"name {draft.name!r}: 1 to 100 letters, digits, '-', '_' or '.', and not a built-in tool's "
                f"name ({', '.join(BUILT_IN)})",
                param="name",
            )
        try:
            await self.toolbox.client.check(draft.url)
        except Invalid as exc:
            raise Invalid(exc.message, param="url") from None
        for field in ("allowed_tools", "requires_approval", "idempotent"):
            named = getattr(draft, field) or []
            if any(not re.fullmatch(NAME_PATTERN, n) for n in named):
                raise Invalid(f"{field}: tool names are letters, digits, '-', '_' or '.'", param=field)
        try:
            record = await self.store.create(draft, actor)
        except ServerNameTaken:
            raise Conflict(f"a tool server named {draft.name!r} exists; choose another name or delete it") from None
        return await self.toolbox.discover(record)

    async def list(self) -> list[ToolServerRecord]:
        return await self.store.list()

    async def get(self, ref: str) -> ToolServerRecord:
        record = await self.store.get(ref)
        if record is None:
            raise NotFound(f"no tool server {ref!r}")
        return record

    async def refresh(self, ref: str) -> ToolServerRecord:
        """Ask the server for its tools again."""
        return await self.toolbox.discover(await self.get(ref))

    async def delete(self, ref: str, actor: Actor) -> None:
        record = await self.get(ref)
        await self.store.delete(record.server_id, actor)

    async def health(self) -> dict[str, str | None]:
        """Each server's state for /readyz, asked now: None when it answers, else why not."""
        records = await self.store.list()
        found = await asyncio.gather(*(self.toolbox.discover(r) for r in records))
        return {r.name: r.discovery_error for r in found}
