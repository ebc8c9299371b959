"""``appliance tools add|list|show|refresh|remove``: the MCP tool servers an
admin registers, with a running appliance (``--url``, an admin key) or in
this process (as the host's user)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec

from appliance.cli.remote import Refused, call_api, call_service
from appliance.settings import Settings


class RemoteToolServers:
    def __init__(self, client) -> None:
        self.client = client

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await call_api(self.client, method, path, body)

    async def add(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/tool-servers", body)

    async def list(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/tool-servers")

    async def show(self, ref: str) -> dict[str, Any]:
        return await self._call("GET", f"/tool-servers/{ref}")

    async def refresh(self, ref: str) -> dict[str, Any]:
        return await self._call("POST", f"/tool-servers/{ref}/refresh")

    async def remove(self, ref: str) -> None:
        await self._call("DELETE", f"/tool-servers/{ref}")


class LocalToolServers:
    """The same, through the service of an appliance opened here (as the host's user)."""

    def __init__(self, service) -> None:
        from appliance.store.audit import Actor

        self.service, self.actor = service, Actor.host()

    async def _call(self, call) -> Any:
        return await call_service(call)

    async def add(self, body: dict[str, Any]) -> dict[str, Any]:
        from appliance.store.tool_servers import ToolServerDraft

        return await self._call(self.service.register(msgspec.convert(body, ToolServerDraft), self.actor))

    async def list(self) -> list[dict[str, Any]]:
        return await self._call(self.service.list())

    async def show(self, ref: str) -> dict[str, Any]:
        return await self._call(self.service.get(ref))

    async def refresh(self, ref: str) -> dict[str, Any]:
        return await self._call(self.service.refresh(ref))

    async def remove(self, ref: str) -> None:
        await self._call(self.service.delete(ref, self.actor))


def describe(server: dict[str, Any]) -> str:
    state = f"unreachable: {server['discovery_error']}" if server.get("discovery_error") else "answering"
    lines = [f"{server['name']}  {server['url']}  ({state})"]
    if server.get("header_names"):
        lines.append(f"  headers: {', '.join(server['header_names'])} (values not shown)")
    if server.get("tenants") != ["*"]:
        lines.append(f"  tenants: {', '.join(server.get('tenants') or []) or 'none'}")
    allowed = server.get("allowed_tools")
    for tool in server.get("tools") or []:
        marks = [m for m, on in (
            ("not allowed", allowed is not None and tool["name"] not in allowed),
            ("needs approval", tool["name"] in server.get("requires_approval", [])),
            ("idempotent", tool["name"] in server.get("idempotent", [])),
        ) if on]  # fmt: skip
        note = f"  [{', '.join(marks)}]" if marks else ""
        lines.append(f"  {server['name']}/{tool['name']}{note}: {tool.get('description') or ''}")
    return "\n".join(lines)


async def run(api, args: argparse.Namespace) -> int:
    try:
        if args.action == "add":
            headers = dict(h.split(":", 1) for h in args.header or [])
            body = {
                "name": args.name, "url": args.server_url,
                "headers": {k.strip(): v.strip() for k, v in headers.items()},
                "allowed_tools": args.allow, "requires_approval": args.approval or [],
                "idempotent": args.idempotent or [], "tenants": args.tenant or ["*"],
            }  # fmt: skip
            shown = [await api.add(body)]
        elif args.action == "list":
            shown = await api.list()
        elif args.action in ("show", "refresh"):
            shown = [await (api.show(args.name) if args.action == "show" else api.refresh(args.name))]
        else:
            await api.remove(args.name)
            print(f"removed tool server {args.name!r}")
            return 0
    except Refused as exc:
        print(f"appliance: {exc.args[0]}", file=sys.stderr)
        return 2
    print(json.dumps(shown, indent=2) if args.json else "\n".join(describe(s) for s in shown))
    return 0


async def _tools(settings: Settings, args: argparse.Namespace) -> int:
    if args.url:
        from appliance.cli.remote import api_client, read_key

        async with api_client(args.url, read_key(args, settings), timeout_s=60, ca_file=args.ca_file) as client:
            return await run(RemoteToolServers(client), args)

    from appliance.observability.logs import configure_logging
    from appliance.runtime import open_runtime

    configure_logging(as_json=False, level="warning")
    async with open_runtime(settings) as runtime:
        return await run(LocalToolServers(runtime.tool_servers), args)


def tools(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.cli.remote import run_remote

    return run_remote(_tools(settings, args), args.url)


def add_parser(sub) -> None:
    parser = sub.add_parser("tools", help="MCP tool servers on the local network: add, list, show, refresh, remove")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register an MCP server (Streamable HTTP)")
    add.add_argument("name", help="how assistants name its tools: NAME/tool")
    add.add_argument("server_url", metavar="URL", help="its MCP endpoint, e.g. http://10.0.0.5:8000/mcp")
    add.add_argument("--header", "-H", action="append", metavar="'NAME: VALUE'",
                     help="a header sent with every request, such as an Authorization token (repeatable)")  # fmt: skip
    add.add_argument("--allow", action="append", metavar="TOOL", help="a tool runs may call (default: all)")
    add.add_argument("--approval", action="append", metavar="TOOL", help="a tool a person approves before each call")
    add.add_argument("--idempotent", action="append", metavar="TOOL", help="a tool safe to call again after a crash")
    add.add_argument("--tenant", action="append", help="a tenant whose keys may use it (default: every tenant)")
    listing = actions.add_parser("list", help="list tool servers and their tools")
    named = []
    for action, text in (("show", "show a tool server"), ("refresh", "ask it for its tools again"),
                         ("remove", "remove a tool server")):  # fmt: skip
        command = actions.add_parser(action, help=text)
        command.add_argument("name", help="its name or id")
        named.append(command)
    for command in (add, listing, *named):
        command.add_argument("--url", help="a running appliance, e.g. https://appliance.lan (default: in-process)")
        command.add_argument("--key", help="an admin API key (or APPLIANCE_API_KEY in the environment)")
        command.add_argument("--key-file", help="file holding the API key (default: the admin key file)")
        command.add_argument("--ca-file", help="with an https:// URL, the CA certificate to trust")
        command.add_argument("--json", action="store_true", help="print JSON")
