"""The tools a run may call, by the names its assistant gives them, and the
one place a call is made.

An assistant names tools by reference: a built-in tool's name
(``calculator``), one tool of a registered MCP server (``erp/lookup_order``)
or all the tools an admin allowed of one (``erp/*``). A tenant's runs see a
server's tools only when the admin allowed the server for that tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import jsonschema
import msgspec

from appliance.errors import Invalid, NotFound
from appliance.knowledge.retrieval import Retriever
from appliance.knowledge.sources import format_sources, passage_dict
from appliance.pacing import aside
from appliance.store.knowledge import ChunkFilter
from appliance.store.tool_calls import ToolCallLedger
from appliance.store.tool_servers import ToolServerRecord, ToolServerStore
from appliance.tools.builtin import CALCULATOR_SCHEMA, CURRENT_TIME_SCHEMA, calculate, current_time
from appliance.tools.mcp_client import McpClient, ServerUnreachable
from appliance.tools.spec import BUILT_IN, RunTools, ToolError, ToolResult, ToolSpec

SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1, "description": "What to look for, in a few words"}},
    "required": ["query"],
    "additionalProperties": False,
}
BUILT_IN_SPECS = {
    "search_documents": ToolSpec(
        ref="search_documents",
        name="search_documents",
        description="Search the knowledge bases of this conversation; returns numbered passages to cite as [n]",
        input_schema=SEARCH_SCHEMA,
        idempotent=True,
    ),
    "calculator": ToolSpec(
        ref="calculator",
        name="calculator",
        description="Evaluate arithmetic exactly: + - * / // % ** and sqrt, log, round, min, max",
        input_schema=CALCULATOR_SCHEMA,
        idempotent=True,
    ),
    "current_time": ToolSpec(
        ref="current_time",
        name="current_time",
        description="The current date, time and time zone of this appliance",
        input_schema=CURRENT_TIME_SCHEMA,
        idempotent=True,
    ),
}
assert tuple(BUILT_IN_SPECS) == BUILT_IN

UNKNOWN_OUTCOME = (
    "The outcome of this call of {tool} is unknown: the appliance stopped while it was being made, and it "
    "is not sent twice because it may have taken effect. Tell the user, so they can check before asking again."
)


def split_ref(ref: str) -> tuple[str | None, str]:
    """(server, tool); a built-in tool has no server."""
    server, slash, tool = ref.partition("/")
    return (server, tool) if slash else (None, ref)


def server_specs(server: ToolServerRecord, wanted: str) -> list[ToolSpec]:
    """The server's usable tools that ``wanted`` ("*" or a name) picks."""
    return [
        ToolSpec(
            ref=f"{server.name}/{tool.name}",
            name=tool.name,
            description=tool.description,
            input_schema=tool.input_schema,
            server=server.name,
            server_id=server.server_id,
            requires_approval=tool.name in server.requires_approval,
            idempotent=tool.name in server.idempotent,
        )
        for tool in server.usable()
        if wanted in ("*", tool.name)
    ]


def check_arguments(spec: ToolSpec, arguments: Any) -> None:
    """ToolError naming what is wrong when ``arguments`` do not fit the tool's input schema."""
    if not isinstance(arguments, dict):
        raise ToolError(f"the arguments of {spec.name} must be a JSON object")
    try:
        jsonschema.validate(arguments, spec.input_schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the arguments"
        raise ToolError(f"{spec.name}: {where}: {exc.message}") from None
    except jsonschema.SchemaError:
        pass  # the server's schema is its own business: the server judges the call


class Toolbox:
    def __init__(
        self,
        servers: ToolServerStore,
        ledger: ToolCallLedger,
        client: McpClient,
        retriever: Retriever | None,
        *,
        call_timeout_s: float,
        list_timeout_s: float,
    ) -> None:
        self.servers = servers
        self.ledger = ledger
        self.client = client
        self.retriever = retriever
        self.call_timeout_s = call_timeout_s
        self.list_timeout_s = list_timeout_s

    async def check(self, refs: Sequence[str], tenant: str, where: str = "context.tools") -> None:
        """For an assistant being saved: every reference names a tool this tenant may use."""
        for ref in refs:
            server_name, tool = split_ref(ref)
            if server_name is None:
                if tool not in BUILT_IN_SPECS:
                    raise NotFound(
                        f"{where}: no tool {ref!r}; the built-in tools are {', '.join(BUILT_IN)}, "
                        f"and a tool server's are named server/tool",
                        param=where,
                    )
                continue
            server = await self.servers.get(server_name)
            if server is None or not server.serves(tenant):
                raise NotFound(f"{where}: no tool server {server_name!r} for this tenant", param=where)
            if tool != "*" and tool not in {t.name for t in server.usable()}:
                raise NotFound(
                    f"{where}: the tool server {server_name!r} has no tool {tool!r} allowed; it has "
                    f"{', '.join(t.name for t in server.usable()) or 'none'}",
                    param=where,
                )
        names = [s.name for s in await self._specs(refs, tenant, {})]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise Invalid(f"{where}: two tools are named {twice[0]!r}; choose one of them", param=where)

    async def for_run(self, refs: Sequence[str], tenant: str) -> RunTools:
        """The tools a run has: those its assistant names that still exist and
        are allowed for its tenant, less those of servers that cannot be reached."""
        unavailable: dict[str, str] = {}
        specs = await self._specs(refs, tenant, unavailable)
        unique = {s.name: s for s in reversed(specs)}  # a name given twice: the first reference wins
        return RunTools([s for s in specs if unique.get(s.name) is s], unavailable)

    async def _specs(self, refs: Sequence[str], tenant: str, unavailable: dict[str, str]) -> list[ToolSpec]:
        specs: list[ToolSpec] = []
        servers: dict[str, ToolServerRecord | None] = {}
        for ref in dict.fromkeys(refs):
            server_name, tool = split_ref(ref)
            if server_name is None:
                if tool in BUILT_IN_SPECS and (tool != "search_documents" or self.retriever is not None):
                    specs.append(BUILT_IN_SPECS[tool])
                continue
            if server_name not in servers:
                servers[server_name] = await self.servers.get(server_name)
            server = servers[server_name]
            if server is None or not server.serves(tenant):
                unavailable[server_name] = "no longer registered for this tenant"
            elif server.discovery_error:
                unavailable[server_name] = server.discovery_error
            else:
                specs.extend(server_specs(server, tool))
        return specs

    async def discover(self, server: ToolServerRecord) -> ToolServerRecord:
        """Ask the server for its tools now, and keep the answer (or why there was none)."""
        reach = await self.servers.dialling(server.server_id)
        if reach is None:
            return server
        try:
            tools = await self.client.list_tools(*reach, self.list_timeout_s)
        except ToolError as exc:
            return await self.servers.discovered(server.server_id, None, str(exc)) or server
        return await self.servers.discovered(server.server_id, tools, None) or server

    async def call_once(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        *,
        run_id: uuid.UUID,
        thread_id: uuid.UUID,
        tool_call_id: str,
        **scope: Any,
    ) -> ToolResult:
        """A call of a run, made at most once for a tool with side effects, however
        often the run is retried (see ``appliance.store.tool_calls``): a result
        recorded before a crash is given back, not fetched again; a call whose
        outcome a crash left unknown is sent again only to an idempotent tool."""
        if spec.server_id is None:  # built in: no side effects, nothing to record
            return await self._result(spec, arguments, f"{run_id}:{tool_call_id}", scope)
        entry = await self.ledger.get(run_id, tool_call_id)
        if entry is not None and entry.state == "done" and entry.result is not None:
            return msgspec.convert(entry.result, ToolResult)
        if entry is not None and not spec.idempotent:
            return ToolResult(text=UNKNOWN_OUTCOME.format(tool=spec.name), unknown=True)
        await self.ledger.sent(run_id, tool_call_id, thread_id, spec.ref, arguments)
        result = await self._result(spec, arguments, f"{run_id}:{tool_call_id}", scope)
        await self.ledger.done(run_id, tool_call_id, msgspec.to_builtins(result))
        return result

    async def _result(self, spec: ToolSpec, arguments: dict[str, Any], key: str, scope: dict) -> ToolResult:
        try:
            return await self.call(spec, arguments, idempotency_key=key, **scope)
        except ToolError as exc:
            return ToolResult(text=str(exc), is_error=True)

    async def call(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        knowledge_bases: Sequence[uuid.UUID] = (),
        retrieval_k: int = 4,
        first_source: int = 1,
    ) -> ToolResult:
        """Make the call. A ToolError is a failure the model is told about."""
        check_arguments(spec, arguments)
        if spec.server_id is None:
            return await self._built_in(spec.name, arguments, knowledge_bases, retrieval_k, first_source)
        reach = await self.servers.dialling(spec.server_id)
        if reach is None:
            raise ToolError(f"the tool server {spec.server} is no longer registered")
        try:
            async with aside():  # the turn's place in the lane is free while the tool server works
                return await self.client.call_tool(
                    *reach, spec.name, arguments, idempotency_key=idempotency_key, timeout_s=self.call_timeout_s
                )
        except ServerUnreachable as exc:
            # Its tools leave the next steps' tool list until a refresh finds it again.
            await self.servers.discovered(spec.server_id, None, str(exc))
            raise

    async def _built_in(
        self, name: str, arguments: dict[str, Any], scope: Sequence[uuid.UUID], k: int, first: int
    ) -> ToolResult:
        if name == "calculator":
            value = calculate(arguments["expression"])
            return ToolResult(text=str(value), structured={"value": value})
        if name == "current_time":
            now = current_time()
            return ToolResult(text=f"{now['weekday']} {now['iso']} ({now['time_zone']})", structured=now)
        if self.retriever is None or not scope:
            raise ToolError("this conversation has no knowledge bases to search")
        found = await self.retriever.search(arguments["query"], ChunkFilter(knowledge_base_ids=list(scope)), k)
        passages = [passage_dict(p) for p in found.passages]
        if not passages:
            return ToolResult(text="No passage matches that search.", structured={"passages": []})
        text = format_sources(passages, start=first)  # numbered after this turn's earlier searches
        return ToolResult(text=text, structured={"passages": passages, "first": first})
