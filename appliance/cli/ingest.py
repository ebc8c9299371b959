"""``appliance ingest PATH...``: add files and folders to a knowledge base.

Through a running appliance (``--url``) or in this process. A file that cannot
be ingested gets a line naming it and the reason; the rest of the batch goes
on, and a summary ends the run (exit status 1 when any file was refused).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from appliance.cli.remote import read_key
from appliance.settings import Settings
from appliance.store.audit import Actor

# Two files in flight: while one is embedded, the other is parsed and written,
# so the cores stay busy with the embedding, the one real cost.
IN_FLIGHT = 2


class Refused(Exception):
    """The appliance would not take a file; the message says why."""


class Target(Protocol):
    async def open(self, name: str) -> str: ...

    async def add(self, path: Path) -> tuple[str, int]: ...


def files_under(paths: Iterable[str]) -> Iterator[Path]:
    """The files named, and those inside the folders named (hidden ones skipped), in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)
            )
        else:
            yield path


class RemoteTarget:
    def __init__(self, url: str, key: str, ca_file: str | None = None) -> None:
        from appliance.cli.remote import api_client

        self.client = api_client(url, key, timeout_s=600, ca_file=ca_file)
        self.kb_id = ""

    async def open(self, name: str) -> str:
        response = await self.client.get("/knowledge-bases")
        response.raise_for_status()
        found = [kb for kb in response.json() if kb["name"] == name]
        if found:
            self.kb_id = found[0]["knowledge_base_id"]
        else:
            response = await self.client.post("/knowledge-bases", json={"name": name})
            response.raise_for_status()
            self.kb_id = response.json()["knowledge_base_id"]
        return self.kb_id

    async def add(self, path: Path) -> tuple[str, int]:
        with path.open("rb") as handle:
            response = await self.client.post(
                f"/knowledge-bases/{self.kb_id}/documents", files={"file": (path.name, handle)}
            )
        if 400 <= response.status_code < 500:
            raise Refused(response.json().get("detail", response.text))
        response.raise_for_status()
        document = response.json()
        return document["outcome"], document["chunk_count"]


class LocalTarget:
    def __init__(self, knowledge, tenant: str) -> None:
        self.knowledge = knowledge
        self.tenant = tenant
        self.kb_id = None

    async def open(self, name: str) -> str:
        kb = await self.knowledge.by_name(self.tenant, name) or await self.knowledge.create(
            self.tenant, name, actor=Actor.host()
        )
        self.kb_id = kb.knowledge_base_id
        return str(self.kb_id)

    async def add(self, path: Path) -> tuple[str, int]:
        from appliance.errors import ApplianceError

        try:
            ingested = await self.knowledge.add_document(
                self.tenant, self.kb_id, path.name, path.read_bytes(), actor=Actor.host()
            )
        except ApplianceError as exc:
            raise Refused(exc.message) from None
        return ingested.outcome, ingested.document.chunk_count


async def run_batch(target: Target, name: str, files: list[Path], *, progress: bool = True) -> int:
    from tqdm import tqdm

    kb_id = await target.open(name)
    print(f"knowledge base {name!r} ({kb_id})")
    outcomes: Counter[str] = Counter()
    chunks = 0
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def add(path: Path, bar: tqdm) -> None:
        nonlocal chunks
        async with slots:
            try:
                outcome, count = await target.add(path)
            except (Refused, OSError) as exc:
                outcomes["refused"] += 1
                bar.write(f"{path}: refused: {exc}", file=sys.stdout)
                return
            finally:
                bar.update(1)
        outcomes[outcome] += 1
        chunks += count if outcome != "unchanged" else 0
        bar.write(f"{path}: {outcome} ({count} chunks)", file=sys.stdout)

    with tqdm(total=len(files), unit="file", disable=not progress, file=sys.stderr) as bar:
        await asyncio.gather(*(add(path, bar) for path in files))
    parts = ", ".join(f"{outcomes[k]} {k}" for k in ("created", "replaced", "unchanged", "refused") if outcomes[k])
    print(f"{len(files)} files: {parts or 'nothing to do'}; {chunks} chunks indexed")
    return 1 if outcomes["refused"] else 0


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    files = list(files_under(args.paths))
    missing = [p for p in files if not p.exists()]
    if missing:
        print(f"appliance: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    progress = not args.quiet
    if args.url:
        key = read_key(args, settings)
        return await run_batch(RemoteTarget(args.url, key, args.ca_file), args.knowledge_base, files, progress=progress)

    from appliance.observability.logs import configure_logging
    from appliance.runtime import open_database, open_knowledge

    configure_logging(as_json=False, level="warning")
    async with open_database(settings) as (pool, _):
        knowledge = await open_knowledge(settings, pool)
        return await run_batch(LocalTarget(knowledge, args.tenant), args.knowledge_base, files, progress=progress)


def ingest(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.cli.remote import run_remote

    return run_remote(_ingest(settings, args), args.url)
