"""``appliance chat``: a terminal conversation, with a running appliance over
HTTP or with an appliance opened in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from appliance.settings import Settings

HELP = "Type a message and press Enter. /new starts a new conversation, /quit (or Ctrl-D) leaves."


class Backend(Protocol):
    thread_id: str

    async def new_thread(self) -> str: ...

    async def earlier_messages(self) -> int: ...

    def send(self, text: str) -> AsyncIterator[str]: ...


def message(text: str) -> dict:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        "stream_mode": ["messages-tuple"],
    }


class RemoteBackend:
    def __init__(self, url: str, key: str, thread_id: str | None) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers={"x-api-key": key}, timeout=httpx.Timeout(300, connect=5), trust_env=False
        )
        self.thread_id = thread_id or ""

    async def new_thread(self) -> str:
        response = await self.client.post("/threads", json={"metadata": {"source": "appliance chat"}})
        response.raise_for_status()
        self.thread_id = response.json()["thread_id"]
        return self.thread_id

    async def earlier_messages(self) -> int:
        response = await self.client.get(f"/threads/{self.thread_id}/state")
        if response.status_code != 200:
            raise RuntimeError(response.json().get("detail", response.text))
        return len(response.json()["values"].get("messages", []))

    async def send(self, text: str) -> AsyncIterator[str]:
        async with self.client.stream("POST", f"/threads/{self.thread_id}/runs/stream", json=message(text)) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(response.json().get("detail", response.text))
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "messages":
                    chunk, _meta = json.loads(line[6:])
                    yield chunk.get("content", "")
                elif line.startswith("data: ") and event == "error":
                    raise RuntimeError(json.loads(line[6:])["message"])


class LocalBackend:
    def __init__(self, runtime, thread_id: str | None) -> None:
        self.runtime = runtime
        self.thread_id = thread_id or ""

    async def new_thread(self) -> str:
        record = await self.runtime.threads.create("default", None, {"source": "appliance chat"}, "raise")
        self.thread_id = str(record.thread_id)
        return self.thread_id

    async def earlier_messages(self) -> int:
        await self.runtime.threads.require("default", uuid.UUID(self.thread_id))
        return len((await self.runtime.threads.values(uuid.UUID(self.thread_id))).get("messages", []))

    async def send(self, text: str) -> AsyncIterator[str]:
        from appliance.engine.events import START
        from appliance.services.runs import RunSpec

        spec = RunSpec(
            assistant_id="agent", input=message(text)["input"], stream_mode=["messages-tuple"], if_not_exists="create"
        )
        run = await self.runtime.runs.create("default", uuid.UUID(self.thread_id), spec)
        async for event in self.runtime.runs.follow(run, START):
            data = json.loads(event.data)
            if event.event == "messages":
                yield data[0]["content"]
            elif event.event == "error":
                raise RuntimeError(data["message"])


async def converse(backend: Backend) -> int:
    if backend.thread_id:
        try:
            earlier = await backend.earlier_messages()
        except Exception as exc:
            print(f"appliance: cannot continue conversation {backend.thread_id}: {exc}", file=sys.stderr)
            return 2
        print(f"conversation {backend.thread_id} ({earlier} earlier messages). {HELP}")
    else:
        await backend.new_thread()
        print(f"conversation {backend.thread_id}. {HELP}")
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


def read_key(args: argparse.Namespace, settings: Settings) -> str | None:
    if args.key:
        return args.key
    if key := os.environ.get("APPLIANCE_API_KEY"):
        return key
    path = Path(args.key_file) if args.key_file else settings.admin_key_path
    return path.read_text().strip() if path.is_file() else None


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    if args.url:
        key = read_key(args, settings)
        if not key:
            print("appliance: give an API key with --key, --key-file or APPLIANCE_API_KEY", file=sys.stderr)
            return 2
        return await converse(RemoteBackend(args.url, key, args.thread))

    from appliance.observability.logs import configure_logging
    from appliance.runtime import open_runtime

    configure_logging(as_json=False, level="warning")
    async with open_runtime(settings) as runtime:
        return await converse(LocalBackend(runtime, args.thread))


def chat(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_chat(settings, args))
