"""Threads as a tenant sees them: ownership, metadata, state and history."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal, get_type_hints

import msgspec
from langchain_core.messages import BaseMessage, convert_to_messages
from langgraph.graph.state import CompiledStateGraph

from appliance.agent.state import AgentState
from appliance.engine.jsonable import checkpoint_ref, integral, jsonable, oversized_int, thread_state, to_json
from appliance.errors import Conflict, Invalid, NotFound
from appliance.store.archive import MessageArchive
from appliance.store.checkpointer import PooledPostgresSaver, thread_config
from appliance.store.runs import RunStore
from appliance.store.state_renderings import StateRenderings
from appliance.store.threads import ThreadExists, ThreadQuery, ThreadRecord, ThreadStore

Role = Literal["user", "human", "assistant", "ai"]


class ClientMessage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A message as a client writes one into the state (see MESSAGE in api/schemas.py)."""

    content: str
    role: Role | None = None
    type: Role | None = None
    id: str | None = None
    name: str | None = None


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    try:
        messages = msgspec.convert(value, list[ClientMessage], strict=True)
    except msgspec.ValidationError as exc:
        raise Invalid(f"{where}: {exc}", param=where) from None
    for i, message in enumerate(messages):
        if not message.content.strip() or (message.role or message.type) is None:
            raise Invalid(f"{where}[{i}] needs a role (or type) and text content", param=where)
    plain = msgspec.to_builtins(messages)
    convert_to_messages(plain)  # every shape above is one LangChain reads
    return plain


# States read at once for a page of threads: a share of the pool, not all of it.
VALUES_AT_ONCE = 4

# Where the window sits in the archive: only a fold moves it.
ARCHIVE_KEYS = frozenset({"archived", "archive_head"})


class ConversationPage(msgspec.Struct):
    """Messages ``first`` to ``first + len(messages)`` of a conversation of ``total``."""

    messages: list[dict[str, Any]]
    first: int
    total: int


def checked_values(values: dict[str, Any], where: str = "values") -> dict[str, Any]:
    """State values of the keys and types the agent's state declares, or Invalid naming the key."""
    hints = get_type_hints(AgentState)
    unknown = set(values) - set(hints)
    if unknown:
        raise Invalid(f"{where} has keys the agent's state does not: {', '.join(sorted(unknown))}", param=where)
    if kept := sorted(ARCHIVE_KEYS & set(values)):
        raise Invalid(f"{where}.{kept[0]} is the appliance's record of the archive; it cannot be set", param=where)
    if where_big := oversized_int(values, where):
        raise Invalid(f"{where_big} is an integer beyond 64 bits, which a checkpoint cannot hold", param=where)
    checked = {}
    for key, value in integral(values).items():
        if key == "messages":
            checked[key] = _messages(value, f"{where}.messages")
            continue
        try:
            checked[key] = msgspec.convert(value, hints[key], strict=True)
        except msgspec.ValidationError as exc:
            raise Invalid(f"{where}.{key}: {exc}", param=where) from None
    return checked


class _StateValues(msgspec.Struct):
    """What a thread's values need of its kept state (the rest is skipped unread)."""

    values: dict[str, Any]


_VALUES = msgspec.json.Decoder(_StateValues)


class ThreadService:
    def __init__(
        self,
        store: ThreadStore,
        graph: CompiledStateGraph,
        checkpointer: PooledPostgresSaver,
        runs: RunStore,
        archive: MessageArchive,
        renderings: StateRenderings,
    ) -> None:
        self.store = store
        self.graph = graph
        self.checkpointer = checkpointer
        self.runs = runs
        self.archive = archive
        self.renderings = renderings

    async def require(self, tenant: str, thread_id: uuid.UUID) -> ThreadRecord:
        record = await self.store.get(tenant, thread_id)
        if record is None:
            raise NotFound(f"thread {thread_id} not found")
        return record

    async def create(
        self,
        tenant: str,
        thread_id: uuid.UUID | None,
        metadata: dict[str, Any],
        if_exists: str,
    ) -> ThreadRecord:
        try:
            return await self.store.create(tenant, thread_id or uuid.uuid4(), metadata, if_exists=if_exists)
        except ThreadExists:
            raise Conflict(f"thread {thread_id} already exists; pass if_exists='do_nothing' to reuse it") from None

    async def values(self, thread_id: uuid.UUID) -> dict[str, Any]:
        """The thread's latest values (its tenant already checked)."""
        return (await self.values_of([thread_id]))[0]

    async def values_of(self, thread_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        """Several threads' latest values (their tenant already checked): from
        their kept renderings, found in one query; the others built side by side
        (a search page asks for them all; one after another each waited for the last)."""
        kept = await self.renderings.latest(thread_ids)
        at_once = asyncio.Semaphore(VALUES_AT_ONCE)

        async def read(thread_id: uuid.UUID) -> dict[str, Any]:
            if body := kept.get(thread_id):
                return _VALUES.decode(body).values
            async with at_once:
                state, _ = await self._render(thread_id)
            return state["values"]

        return list(await asyncio.gather(*(read(t) for t in thread_ids)))

    async def patch(self, tenant: str, thread_id: uuid.UUID, metadata: dict[str, Any]) -> ThreadRecord:
        record = await self.store.merge_metadata(tenant, thread_id, metadata)
        if record is None:
            raise NotFound(f"thread {thread_id} not found")
        return record

    async def delete(self, tenant: str, thread_id: uuid.UUID) -> None:
        await self.require(tenant, thread_id)
        if await self.runs.inflight(thread_id):
            raise Conflict(f"thread {thread_id} has a run pending or in progress; cancel it or try when it ends")
        if await self.store.delete(tenant, thread_id):
            await self.checkpointer.adelete_thread(str(thread_id))

    async def search(self, tenant: str, query: ThreadQuery) -> list[ThreadRecord]:
        return await self.store.search(tenant, query)

    async def state(self, tenant: str, thread_id: uuid.UUID, checkpoint_id: str | None = None) -> dict[str, Any]:
        await self.require(tenant, thread_id)
        snapshot = await self.graph.aget_state(thread_config(thread_id, checkpoint_id))
        # LangGraph answers an unknown checkpoint with an empty snapshot that
        # echoes the config it was asked for; only a stored one has a time.
        if checkpoint_id and snapshot.created_at is None:
            raise NotFound(f"checkpoint {checkpoint_id} not found in thread {thread_id}")
        return thread_state(snapshot)

    async def latest_state_json(self, tenant: str, thread_id: uuid.UUID) -> bytes:
        """The thread's latest state, encoded: the rendering kept for its latest
        checkpoint when there is one, else built (and kept when the state is
        at rest: no step pending, so nothing but a new checkpoint changes it)."""
        kept = await self.renderings.latest([thread_id], tenant)
        if thread_id not in kept:
            raise NotFound(f"thread {thread_id} not found")
        if body := kept[thread_id]:
            return body
        _, body = await self._render(thread_id)
        return body

    async def _render(self, thread_id: uuid.UUID) -> tuple[dict[str, Any], bytes]:
        """The thread's latest state built, and encoded; the encoding kept when
        the state is at rest (no step pending: only a new checkpoint changes it)."""
        snapshot = await self.graph.aget_state(thread_config(thread_id))
        state = thread_state(snapshot)
        body = to_json(state)
        rendered = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
        if rendered and not snapshot.next and not snapshot.tasks:
            await self.renderings.keep(thread_id, rendered, body)
        return state, body

    async def conversation(self, thread_id: uuid.UUID, values: dict[str, Any]) -> list[BaseMessage]:
        """The whole conversation of a state (``values``, at any checkpoint): its archived messages, then its window."""
        archived = await self.archive.read(str(thread_id), values.get("archive_head"), 0, values.get("archived", 0))
        return [*archived, *values.get("messages", [])]

    async def messages(self, tenant: str, thread_id: uuid.UUID, *, limit: int, before: int | None) -> ConversationPage:
        """Up to ``limit`` messages of the whole conversation, the latest before
        position ``before`` (None: the end); archived ones are read only when asked for."""
        if before is not None and before < 0:
            raise Invalid(f"before must be a position in the conversation (0 or more), not {before}", param="before")
        await self.require(tenant, thread_id)
        values = (await self.graph.aget_state(thread_config(thread_id))).values
        window, archived = values.get("messages", []), values.get("archived", 0)
        total = archived + len(window)
        stop = total if before is None else min(before, total)
        first = max(0, stop - limit)
        older = await self.archive.read(str(thread_id), values.get("archive_head"), first, min(stop, archived))
        recent = window[max(0, first - archived) : max(0, stop - archived)]
        return ConversationPage(jsonable([*older, *recent]), first, total)

    async def history(
        self,
        tenant: str,
        thread_id: uuid.UUID,
        *,
        limit: int,
        before: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self.require(tenant, thread_id)
        return [
            thread_state(snapshot)
            async for snapshot in self.graph.aget_state_history(
                thread_config(thread_id),
                limit=limit,
                before=thread_config(thread_id, before) if before else None,
                filter=metadata or None,
            )
        ]

    async def update_state(
        self,
        tenant: str,
        thread_id: uuid.UUID,
        values: dict[str, Any] | list[Any] | None,
        as_node: str | None,
        checkpoint_id: str | None,
    ) -> dict[str, Any]:
        """Write values into the thread's state (a new checkpoint), as ``as_node``
        would have; from ``checkpoint_id`` when given, which forks the thread."""
        await self.require(tenant, thread_id)
        nodes = set(self.graph.nodes) - {"__start__"}
        if as_node is not None and as_node not in nodes:
            raise Invalid(f"as_node {as_node!r} is not a node of the agent; its nodes are {', '.join(sorted(nodes))}")
        if values is not None and not isinstance(values, dict):
            raise Invalid('values must be an object of state keys, such as {"messages": [...]}')
        values = checked_values(values) if values else values
        if await self.runs.inflight(thread_id):
            raise Conflict(f"thread {thread_id} has a run pending or in progress; change its state when it ends")
        if checkpoint_id:
            await self.state(tenant, thread_id, checkpoint_id)
        config = await self.graph.aupdate_state(thread_config(thread_id, checkpoint_id), values, as_node=as_node)
        return checkpoint_ref(config) or {}

    async def copy(self, tenant: str, thread_id: uuid.UUID) -> ThreadRecord:
        """A new thread with the same metadata and every checkpoint of this one."""
        source = await self.require(tenant, thread_id)
        copy = await self.store.create(tenant, uuid.uuid4(), source.metadata, if_exists="raise")
        await self.checkpointer.acopy_thread(str(thread_id), str(copy.thread_id))
        return copy
