"""MCP servers on the local network, reached over Streamable HTTP with the
``mcp`` SDK's client: list their tools, call one.

Every connection first checks the URL against the allowed networks and then
dials the address that check resolved (``appliance.network``), so a DNS
answer that changes after registration cannot send a call elsewhere. Headers
(secrets) go to the server and nowhere else: not into errors, not into logs.
"""

from __future__ import annotations

import asyncio
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
# A server that pages its tool list further than this is taken at its first pages.
MAX_LIST_PAGES = 50


class ServerUnreachable(ToolError):
    """The server could not be reached (or is not allowed): no call was made."""


class _Session:
    """One open MCP client, held by a task of its own (the SDK's task groups
    must be entered and left by one task), used by any number of calls."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Client | None = None
        self.closing = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str, headers: dict[str, str], connect_s: float) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        target, host = pinned(url, self.address)

        async def hold() -> None:
            try:
                timeout = httpx2.Timeout(None, connect=connect_s)
                async with (
                    httpx2.AsyncClient(headers={**headers, **host}, timeout=timeout, trust_env=False) as http,
                    Client(streamable_http_client(target, http_client=http)) as client,
                ):
                    ready.set_result(client)
                    await self.closing.wait()
            except BaseException as exc:  # handed to whoever waits for the session to open
                if not ready.done():
                    ready.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

        self.task = asyncio.create_task(hold(), name="mcp-session")
        self.client = await asyncio.wait_for(asyncio.shield(ready), connect_s * 2)
        return self.client

    async def close(self) -> None:
        self.closing.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except BaseException:  # a session that will not close cleanly is dropped all the same
                self.task.cancel()


class McpClient:
    """Sessions are kept open, one per server (URL, headers and the address
    dialled), so a call is one request; a session that fails is dropped and
    the next call opens another."""

    def __init__(self, allowed: list[Network], *, connect_timeout_s: float = 5.0) -> None:
        self.allowed = allowed
        self.connect_timeout_s = connect_timeout_s
        self._sessions: dict[tuple, _Session] = {}
        self._opening: dict[tuple, asyncio.Lock] = {}

    async def check(self, url: str) -> str:
        """The address ``url`` reaches, or Invalid when it may not be used."""
        return await allowed_address(url, self.allowed, what="tool server", setting=ALLOWED_SETTING)

    async def _client(self, url: str, headers: dict[str, str]) -> tuple[tuple, Client]:
        try:
            address = await self.check(url)  # at every call: a name may now resolve elsewhere
        except Invalid as exc:
            raise ServerUnreachable(exc.message) from None
        key = (url, tuple(sorted(headers.items())), address)
        async with self._opening.setdefault(key, asyncio.Lock()):
            session = self._sessions.get(key)
            if session is None or session.client is None or session.task is None or session.task.done():
                session = _Session(address)
                try:
                    await session.open(url, headers, self.connect_timeout_s)
                except BaseException:
                    await session.close()
                    raise
                self._sessions[key] = session
            return key, session.client

    async def _drop(self, key: tuple) -> None:
        session = self._sessions.pop(key, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        for key in list(self._sessions):
            await self._drop(key)

    async def list_tools(self, url: str, headers: dict[str, str], timeout_s: float = 10.0) -> list[DiscoveredTool]:
        key = None
        try:
            async with asyncio.timeout(timeout_s):
                key, client = await self._client(url, headers)
                listed, cursor = [], None
                for _ in range(MAX_LIST_PAGES):
                    page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                    listed += page.tools
                    if not (cursor := page.next_cursor):
                        break
        except ToolError:
            raise
        except BaseException as exc:  # the SDK raises through task groups: one message for all of it
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            if key is not None:
                await self._drop(key)
            raise ServerUnreachable(f"the tool server at {url} did not list its tools: {describe(exc)}") from None
        return [
            DiscoveredTool(name=t.name, description=t.description or "", input_schema=dict(t.input_schema or {}))
            for t in listed
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
        key = None
        try:
            async with asyncio.timeout(timeout_s):
                key, client = await self._client(url, headers)
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
            if key is not None:
                await self._drop(key)
            raise ToolError(f"the call to {name} failed: {describe(exc)}") from None
        text = "\n".join(getattr(part, "text", "") for part in result.content if getattr(part, "text", None))
        return ToolResult(text=text, is_error=bool(result.is_error), structured=result.structured_content)


def describe(exc: BaseException) -> str:
    """The innermost cause, without the task group wrapping (and never a header)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]
