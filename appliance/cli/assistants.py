"""``appliance assistants create|list|show|update|delete``: the tenant's
assistants, with a running appliance (``--url``) or in this process."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Protocol

from appliance.cli.remote import Refused, call_api, call_service
from appliance.settings import Settings


class AssistantsApi(Protocol):
    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def list(self) -> list[dict[str, Any]]: ...

    async def show(self, ref: str) -> dict[str, Any]: ...

    async def versions(self, ref: str) -> list[dict[str, Any]]: ...

    async def delete(self, ref: str) -> None: ...


class RemoteAssistants:
    def __init__(self, client) -> None:
        self.client = client

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await call_api(self.client, method, path, body)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/assistants", {"graph_id": "agent", **body})

    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", f"/assistants/{ref}", body)

    async def list(self) -> list[dict[str, Any]]:
        return await self._call("POST", "/assistants/search", {"limit": 1000, "sort_by": "name", "sort_order": "asc"})

    async def show(self, ref: str) -> dict[str, Any]:
        return await self._call("GET", f"/assistants/{ref}")

    async def versions(self, ref: str) -> list[dict[str, Any]]:
        return await self._call("POST", f"/assistants/{ref}/versions", {"limit": 1000})

    async def delete(self, ref: str) -> None:
        await self._call("DELETE", f"/assistants/{ref}")


class LocalAssistants:
    """The same, through the service of an appliance opened here (as the host's user)."""

    def __init__(self, service, tenant: str) -> None:
        from appliance.store.audit import Actor

        self.service, self.tenant, self.actor = service, tenant, Actor.host()

    async def _call(self, call) -> Any:
        return await call_service(call)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.service.create(self.tenant, graph_id="agent", actor=self.actor, **body))

    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.service.update(self.tenant, ref, actor=self.actor, **body))

    async def list(self) -> list[dict[str, Any]]:
        from appliance.store.assistants import AssistantQuery

        query = AssistantQuery(limit=1000, sort_by="name", descending=False)
        return await self._call(self.service.search(self.tenant, query))

    async def show(self, ref: str) -> dict[str, Any]:
        return await self._call(self.service.get(self.tenant, ref))

    async def versions(self, ref: str) -> list[dict[str, Any]]:
        return await self._call(self.service.versions(self.tenant, ref, None, 1000, 0))

    async def delete(self, ref: str) -> None:
        await self._call(self.service.delete(self.tenant, ref, self.actor))


def context_of(args: argparse.Namespace) -> dict[str, Any]:
    """The assistant settings given on the command line (only those given)."""
    context: dict[str, Any] = {}
    if args.instructions_file:
        with open(args.instructions_file, encoding="utf-8") as handle:
            context["instructions"] = handle.read().strip()
    if args.instructions:
        context["instructions"] = args.instructions
    if args.knowledge_base:
        context["knowledge_bases"] = args.knowledge_base
    if args.documents_only is not None:
        context["documents_only"] = args.documents_only
    for name in ("model", "temperature", "max_tokens", "retrieval_k", "relevance_floor", "searches_per_question"):
        if getattr(args, name) is not None:
            context[name] = getattr(args, name)
    if args.memory_tokens is not None:
        context["memory_token_budget"] = args.memory_tokens
    if args.tool is not None:
        context["tools"] = [] if args.tool == ["none"] else args.tool
    return context


def describe(assistant: dict[str, Any]) -> str:
    context = assistant.get("context") or {}
    lines = [f"{assistant['name']}  ({assistant['assistant_id']}, version {assistant['version']})"]
    if assistant.get("description"):
        lines.append(f"  {assistant['description']}")
    lines += [f"  {key}: {json.dumps(value)}" for key, value in sorted(context.items())]
    return "\n".join(lines)


async def run(api: AssistantsApi, args: argparse.Namespace) -> int:
    try:
        if args.action in ("create", "update"):
            body: dict[str, Any] = {}
            context = context_of(args)
            if args.action == "create":
                body = {"name": args.name, "context": context}
            elif context:
                current = await api.show(args.name)
                body["context"] = (current.get("context") or {}) | context
            if args.description is not None:
                body["description"] = args.description
            if getattr(args, "rename", None):
                body["name"] = args.rename
            result = await (api.create(body) if args.action == "create" else api.update(args.name, body))
            print(json.dumps(result, indent=2) if args.json else describe(result))
        elif args.action == "list":
            found = await api.list()
            if args.json:
                print(json.dumps(found, indent=2))
            for assistant in [] if args.json else found:
                print(f"{assistant['name']:<24} {assistant['assistant_id']}  v{assistant['version']:<4} "
                      f"{assistant.get('description') or ''}")  # fmt: skip
        elif args.action == "show":
            shown = await api.versions(args.name) if args.versions else [await api.show(args.name)]
            print(json.dumps(shown if args.versions else shown[0], indent=2) if args.json else
                  "\n".join(describe(a) for a in shown))  # fmt: skip
        elif args.action == "delete":
            await api.delete(args.name)
            print(f"deleted assistant {args.name!r}")
    except Refused as exc:
        print(f"appliance: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


async def _assistants(settings: Settings, args: argparse.Namespace) -> int:
    if args.url:
        from appliance.cli.remote import api_client, read_key

        key = read_key(args, settings)
        async with api_client(args.url, key, timeout_s=60, ca_file=args.ca_file) as client:
            return await run(RemoteAssistants(client), args)

    from appliance.observability.logs import configure_logging
    from appliance.runtime import open_runtime

    configure_logging(as_json=False, level="warning")
    async with open_runtime(settings) as runtime:
        return await run(LocalAssistants(runtime.assistants, args.tenant), args)


def assistants(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.cli.remote import run_remote

    return run_remote(_assistants(settings, args), args.url)


def add_parser(sub) -> None:
    parser = sub.add_parser("assistants", help="the tenant's assistants: create, list, show, update, delete")
    actions = parser.add_subparsers(dest="action", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument("--url", help="a running appliance, e.g. https://appliance.lan (default: in-process)")
        command.add_argument("--key", help="API key (or APPLIANCE_API_KEY in the environment)")
        command.add_argument("--key-file", help="file holding the API key (default: the admin key file)")
        command.add_argument("--ca-file", help="with an https:// URL, the CA certificate to trust")
        command.add_argument("--tenant", default="default", help="in-process only: the tenant that owns them")
        command.add_argument("--json", action="store_true", help="print JSON")

    def settings_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--description")
        command.add_argument("--instructions", help="its system prompt")
        command.add_argument("--instructions-file", help="a file holding its system prompt")
        command.add_argument("--knowledge-base", "-k", action="append", metavar="NAME",
                             help="a knowledge base it answers from, by name or id (repeatable; '*': all)")  # fmt: skip
        command.add_argument("--documents-only", action=argparse.BooleanOptionalAction, default=None,
                             help="answer every message from the documents or refuse")  # fmt: skip
        command.add_argument("--model", help="a chat model this appliance has")
        command.add_argument("--temperature", type=float)
        command.add_argument("--max-tokens", type=int, help="longest answer, in tokens")
        command.add_argument("--retrieval-k", type=int, help="passages an answer is written from")
        command.add_argument("--relevance-floor", type=float)
        command.add_argument("--searches-per-question", type=int)
        command.add_argument("--memory-tokens", type=int, help="conversation tokens the prompt holds")
        command.add_argument("--tool", action="append", metavar="TOOL",
                             help="a tool it may call: calculator, current_time, search_documents, SERVER/TOOL or "
                             "SERVER/* (repeatable; 'none': no tools)")  # fmt: skip

    create = actions.add_parser("create", help="create an assistant")
    create.add_argument("name")
    settings_options(create)
    update = actions.add_parser("update", help="change an assistant (a new version)")
    update.add_argument("name", help="its name or id")
    update.add_argument("--rename", help="a new name")
    settings_options(update)
    listing = actions.add_parser("list", help="list the assistants")
    show = actions.add_parser("show", help="show an assistant")
    show.add_argument("name", help="its name or id")
    show.add_argument("--versions", action="store_true", help="every version, newest first")
    delete = actions.add_parser("delete", help="delete an assistant and its versions")
    delete.add_argument("name", help="its name or id")
    for command in (create, update, listing, show, delete):
        common(command)
