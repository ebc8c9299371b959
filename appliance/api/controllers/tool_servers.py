"""Tool servers, for admins: register an MCP server, see the tools it lists,
ask it again, remove it. Its headers are taken, never shown."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from appliance.api.auth import admin_only
from appliance.api.schemas import ToolServerCreate
from appliance.services.tool_servers import ToolServerService
from appliance.store.audit import Actor
from appliance.store.tool_servers import ToolServerDraft, ToolServerRecord


class ToolServerController(Controller):
    path = "/tool-servers"
    tags = ["tools"]
    guards = [admin_only]

    @post("/", status_code=201, summary="Register an MCP server (Streamable HTTP) on the allowed networks")
    async def register(
        self,
        tool_servers: NamedDependency[ToolServerService],
        actor: NamedDependency[Actor],
        data: JSONBody[ToolServerCreate],
    ) -> ToolServerRecord:
        return await tool_servers.register(msgspec.convert(msgspec.structs.asdict(data), ToolServerDraft), actor)

    @get("/", summary="List tool servers and the tools each lists")
    async def list_servers(self, tool_servers: NamedDependency[ToolServerService]) -> list[ToolServerRecord]:
        return await tool_servers.list()

    @get("/{server:str}", summary="A tool server (by id or name): its tools, names, descriptions and input schemas")
    async def get_server(
        self, tool_servers: NamedDependency[ToolServerService], server: FromPath[str]
    ) -> ToolServerRecord:
        return await tool_servers.get(server)

    @post("/{server:str}/refresh", status_code=200, summary="Ask the server for its tools again")
    async def refresh(
        self, tool_servers: NamedDependency[ToolServerService], server: FromPath[str]
    ) -> ToolServerRecord:
        return await tool_servers.refresh(server)

    @delete("/{server:str}", status_code=204, summary="Remove a tool server; assistants lose its tools")
    async def remove(
        self, tool_servers: NamedDependency[ToolServerService], actor: NamedDependency[Actor], server: FromPath[str]
    ) -> None:
        await tool_servers.delete(server, actor)
