"""MCP servers on the local network, reached over Streamable HTTP with the
``mcp`` SDK's client: list their tools, call one.

Every connection first checks the URL against the allowed networks and then
dials the address that check resolved (``appliance.network``), so a DNS
answer that changes after registration cannot send a call elsewhere. Headers
(secrets) go to the server and nowhere else: not into errors, not into logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from appliance.errors import Invalid
from appliance.network import Network, allowed_address, pinned
from appliance.store.tool_servers import DiscoveredTool
from appliance.tools.spec import ToolError, ToolResult

ALLOWED_SETTING = "APPLIANCE_TOOL_ALLOWED_NETWORKS"
# The request metadata key that carries a call's idempotency key.
IDEMPOTENCY_META_KEY = "idempotency_key"


class ServerUnreachable(ToolError):
    """The server could not be reached (or is not allowed): no call was made."""


class McpClient:
    def __init__(self, allowed: list[Network], *, connect_timeout_s: float = 5.0) -> None:
        self.allowed = allowed
        self.connect_timeout_s = connect_timeout_s

    async def check(self, url: str) -> str:
        """The address ``url`` reaches, or Invalid when it may not be used."""
        return await allowed_address(url, self.allowed, what="tool server", setting=ALLOWED_SETTING)

    @asynccontextmanager
    async def _session(self, url: str, headers: dict[str, str], timeout_s: float) -> AsyncIterator[Client]:
        try:
            address = await self.check(url)
        except Invalid as exc:
            raise ServerUnreachable(exc.message) from None
        target, host = pinned(url, address)
        timeout = httpx2.Timeout(timeout_s, connect=min(self.connect_timeout_s, timeout_s))
        async with httpx2.AsyncClient(headers={**headers, **host}, timeout=timeout, trust_env=False) as http:
            async with Client(streamable_http_client(target, http_client=http), read_timeout_seconds=timeout_s) as c:
                yield c

    async def list_tools(self, url: str, headers: dict[str, str], timeout_s: float = 10.0) -> list[DiscoveredTool]:
        try:
            async with asyncio.timeout(timeout_s), self._session(url, headers, timeout_s) as client:
                listed = await client.list_tools()
        except ToolError:
            raise
        except BaseException as exc:  # the SDK raises through task groups: one message for all of it
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            raise ServerUnreachable(f"the tool server at {url} did not list its tools: {describe(exc)}") from None
        return [
            DiscoveredTool(name=t.name, description=t.description or "", input_schema=dict(t.input_schema or {}))
            for t in listed.tools
        ]

    async def call_tool(
        self,
        url: str,
        headers: dict[str, str],
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout_s: float,
    ) -> ToolResult:
        """The tool's result (``is_error`` when the tool itself failed); a
        ToolError when the call did not complete (timeout, connection lost)."""
        try:
            async with asyncio.timeout(timeout_s), self._session(url, headers, timeout_s) as client:
                result = await client.call_tool(name, arguments, meta={IDEMPOTENCY_META_KEY: idempotency_key})
        except TimeoutError:
            raise ToolError(
                f"the tool {name} did not answer within {timeout_s:g} s; it may still have taken effect"
            ) from None
        except ToolError:
            raise
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            raise ToolError(f"the call to {name} failed: {describe(exc)}") from None
        text = "\n".join(getattr(part, "text", "") for part in result.content if getattr(part, "text", None))
        return ToolResult(text=text, is_error=bool(result.is_error), structured=result.structured_content)


def describe(exc: BaseException) -> str:
    """The innermost cause, without the task group wrapping (and never a header)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]
