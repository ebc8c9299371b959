"""``appliance chat``: a terminal conversation, with a running appliance over
HTTP or with an appliance opened in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

from appliance.settings import Settings

HELP = "Type a message and press Enter. /new starts a new conversation, /quit (or Ctrl-D) leaves."


class Backend(Protocol):
    thread_id: str

    async def new_thread(self) -> str: ...

    async def knowledge_bases(self) -> dict[str, str]: ...

    async def assistant_name(self) -> str: ...

    async def earlier_messages(self) -> int: ...

    def send(self, text: str) -> AsyncIterator[str]: ...


def choose_bases(available: dict[str, str], wanted: list[str]) -> list[str]:
    """The knowledge bases named (by name or id), as ids, from ``available`` (name to id)."""
    ids = set(available.values())
    unknown = [w for w in wanted if w not in available and w not in ids]
    if unknown:
        names = ", ".join(sorted(available)) or "none yet; add one with appliance ingest"
        raise LookupError(f"no knowledge base named {', '.join(map(repr, unknown))} (there are: {names})")
    return list(dict.fromkeys(available.get(w, w) for w in wanted))


def sources_of(message: dict) -> str:
    """The sources of an answer, one line each, as the web chat lists them."""
    from appliance.knowledge.sources import locator

    citations = (message.get("response_metadata") or {}).get("citations") or []
    return "".join(f"\n  [{c['index']}] {locator(c)}" for c in citations)


def answer_pieces(chunk: dict) -> str:
    """What a streamed message adds on screen: its text, and its sources once they are known."""
    return str(chunk.get("content", "")) + sources_of(chunk)


def message(text: str) -> dict:
    # No assistant_id: the thread's, chosen when it was made.
    return {"input": {"messages": [{"role": "user", "content": text}]}, "stream_mode": ["messages-tuple"]}


async def thread_metadata(backend: Backend, bases: list[str] | None, assistant_id: str | None) -> dict:
    """A new conversation's metadata: its assistant, and knowledge bases only when
    some were named (else the assistant's, the rule every client follows)."""
    metadata: dict = {"source": "appliance chat"}
    if assistant_id:
        metadata["assistant_id"] = assistant_id
    if bases:
        metadata["knowledge_bases"] = choose_bases(await backend.knowledge_bases(), bases)
    return metadata


class RemoteBackend:
    def __init__(
        self,
        url: str,
        key: str,
        thread_id: str | None,
        bases: list[str] | None = None,
        ca_file: str | None = None,
        assistant: str | None = None,
    ) -> None:
        from appliance.cli.remote import api_client

        self.client = api_client(url, key, timeout_s=300, ca_file=ca_file)
        self.thread_id = thread_id or ""
        self.bases = bases
        self.assistant = assistant

    async def _assistant(self, ref: str) -> dict:
        response = await self.client.get(f"/assistants/{ref}")
        if response.status_code == 404:
            raise LookupError(f"no assistant {ref!r}; appliance assistants list shows them")
        response.raise_for_status()
        return response.json()

    async def assistant_name(self) -> str:
        response = await self.client.get(f"/threads/{self.thread_id}")
        response.raise_for_status()
        return (await self._assistant(response.json()["metadata"].get("assistant_id") or "agent"))["name"]

    async def knowledge_bases(self) -> dict[str, str]:
        response = await self.client.get("/knowledge-bases")
        response.raise_for_status()
        return {kb["name"]: kb["knowledge_base_id"] for kb in response.json()}

    async def new_thread(self) -> str:
        assistant_id = (await self._assistant(self.assistant))["assistant_id"] if self.assistant else None
        metadata = await thread_metadata(self, self.bases, assistant_id)
        response = await self.client.post("/threads", json={"metadata": metadata})
        response.raise_for_status()
        self.thread_id = response.json()["thread_id"]
        return self.thread_id

    async def earlier_messages(self) -> int:
        response = await self.client.get(f"/threads/{self.thread_id}/state")
        if response.status_code != 200:
            raise RuntimeError(response.json().get("detail", response.text))
        return len(response.json()["values"].get("messages", []))

    async def send(self, text: str) -> AsyncIterator[str]:
        from appliance.cli.remote import read_events

        async with self.client.stream("POST", f"/threads/{self.thread_id}/runs/stream", json=message(text)) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(response.json().get("detail", response.text))
            async for event, data in read_events(response.aiter_lines()):
                if event == "messages":
                    chunk, _meta = data
                    yield answer_pieces(chunk)
                elif event == "error":
                    raise RuntimeError(data["message"])


class LocalBackend:
    def __init__(self, runtime, thread_id: str | None, bases: list[str] | None = None, assistant: str | None = None):
        self.runtime = runtime
        self.thread_id = thread_id or ""
        self.bases = bases
        self.assistant = assistant

    async def _assistant(self, ref: str):
        from appliance.errors import NotFound

        try:
            return await self.runtime.assistants.get("default", ref)
        except NotFound:
            raise LookupError(f"no assistant {ref!r}; appliance assistants list shows them") from None

    async def assistant_name(self) -> str:
        thread = await self.runtime.threads.require("default", uuid.UUID(self.thread_id))
        return (await self._assistant(thread.metadata.get("assistant_id") or "agent")).name

    async def knowledge_bases(self) -> dict[str, str]:
        return {kb.name: str(kb.knowledge_base_id) for kb in await self.runtime.knowledge.list("default")}

    async def new_thread(self) -> str:
        assistant_id = str((await self._assistant(self.assistant)).assistant_id) if self.assistant else None
        metadata = await thread_metadata(self, self.bases, assistant_id)
        record = await self.runtime.threads.create("default", None, metadata, "raise")
        self.thread_id = str(record.thread_id)
        return self.thread_id

    async def earlier_messages(self) -> int:
        await self.runtime.threads.require("default", uuid.UUID(self.thread_id))
        return len((await self.runtime.threads.values(uuid.UUID(self.thread_id))).get("messages", []))

    async def send(self, text: str) -> AsyncIterator[str]:
        from appliance.engine.events import START
        from appliance.services.runs import RunSpec

        spec = RunSpec(input=message(text)["input"], stream_mode=["messages-tuple"], if_not_exists="create")
        run = await self.runtime.runs.create("default", uuid.UUID(self.thread_id), spec, key_id=None)
        async for event in self.runtime.runs.follow(run, START):
            data = json.loads(event.data)
            if event.event == "messages":
                yield answer_pieces(data[0])
            elif event.event == "error":
                raise RuntimeError(data["message"])


async def converse(backend: Backend) -> int:
    if backend.thread_id:
        try:
            earlier = await backend.earlier_messages()
        except Exception as exc:
            print(f"appliance: cannot continue conversation {backend.thread_id}: {exc}", file=sys.stderr)
            return 2
        assistant = await backend.assistant_name()
        print(f"conversation {backend.thread_id} with {assistant} ({earlier} earlier messages). {HELP}")
    else:
        try:
            await backend.new_thread()
        except LookupError as exc:
            print(f"appliance: {exc.args[0]}", file=sys.stderr)
            return 2
        print(f"conversation {backend.thread_id} with {await backend.assistant_name()}. {HELP}")
    loop = asyncio.get_running_loop()
    while True:
        try:
            text = (await loop.run_in_executor(None, input, "\nyou> ")).strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/new":
            print(f"conversation {await backend.new_thread()}")
            continue
        print("assistant> ", end="", flush=True)
        try:
            async for piece in backend.send(text):
                print(piece, end="", flush=True)
            print()
        except Exception as exc:
            print(f"\n[error] {exc}")


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    if args.url:
        from appliance.cli.remote import read_key

        key = read_key(args, settings)
        backend = RemoteBackend(args.url, key, args.thread, args.knowledge_base, args.ca_file, args.assistant)
        return await converse(backend)

    from appliance.observability.logs import configure_logging
    from appliance.runtime import open_runtime

    configure_logging(as_json=False, level="warning")
    async with open_runtime(settings) as runtime:
        return await converse(LocalBackend(runtime, args.thread, args.knowledge_base, args.assistant))


def chat(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.cli.remote import run_remote

    return run_remote(_chat(settings, args), args.url)
