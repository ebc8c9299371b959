"""A real MCP server (the ``mcp`` SDK's MCPServer over Streamable HTTP) on a
free loopback port, in a thread of its own, standing in for a team's ERP and
ticket system:

- ``lookup_order(order_id)``: reads; an id not shaped ``A-<digits>`` is refused
  with an error the model can correct;
- ``create_ticket(title)``: a side effect, counted per execution with the
  idempotency key the appliance sent;
- ``slow_report()``: never answers in time.

It requires ``Authorization: Bearer <token>``, so a test sees the appliance
send the registered headers.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from tests.support.services import free_port

TOKEN = "s3cret-erp-token-7f1c"
# A host name tests resolve to this server, and later elsewhere (DNS rebinding).
REBIND_NAME = "erp.rebind.test"
ORDERS = {"A-1001": "shipped on 2026-11-30 by courier, tracking 7731", "A-1002": "waiting for stock"}


@dataclass
class ErpServer:
    port: int
    url: str
    tickets: Counter = field(default_factory=Counter)  # title: executions
    keys: list[str] = field(default_factory=list)  # idempotency keys seen, in order
    lookups: list[str] = field(default_factory=list)
    ticket_delay_s: float = 0.0
    unauthorised: int = 0


def build_server(state: ErpServer) -> MCPServer:
    server = MCPServer("erp", instructions="Orders and tickets of the test company")

    def authorised(ctx: Context) -> None:
        headers = ctx.headers or {}
        if headers.get("authorization") != f"Bearer {TOKEN}":
            state.unauthorised += 1
            raise ToolError("missing or wrong bearer token")

    @server.tool(description="Look up an order by its id (like A-1001): its status")
    def lookup_order(order_id: str, ctx: Context) -> str:
        authorised(ctx)
        state.lookups.append(order_id)
        if not re.fullmatch(r"A-\d+", order_id):
            raise ToolError(f"order ids look like A-1001, not {order_id!r}")
        return f"Order {order_id}: {ORDERS.get(order_id, 'no such order')}"

    @server.tool(description="Open a support ticket with a title; returns its number")
    async def create_ticket(title: str, ctx: Context) -> str:
        authorised(ctx)
        meta = ctx.request_context.meta
        key = (meta or {}).get("idempotency_key")
        if state.ticket_delay_s:
            await asyncio.sleep(state.ticket_delay_s)
        state.tickets[title] += 1
        state.keys.append(str(key))
        return f"Ticket T-{sum(state.tickets.values())} opened: {title}"

    @server.tool(description="A report that takes very long")
    async def slow_report(ctx: Context) -> str:
        await asyncio.sleep(3600)
        return "never"

    return server


class RunningErp:
    """The server in a thread with its own event loop; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self) -> None:
        port = free_port()
        self.state = ErpServer(port=port, url=f"http://127.0.0.1:{port}/mcp")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RunningErp:
        # DNS rebinding protection on, as the SDK sets it for loopback, also
        # knowing the name a test gives this server (REBIND_NAME).
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", f"{REBIND_NAME}:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
        )
        app = build_server(self.state).streamable_http_app(host="127.0.0.1", transport_security=security)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.state.port, log_config=None, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test MCP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(15)
            self._server = None
