"""Threads as a tenant sees them: ownership, metadata, state and history."""

from __future__ import annotations

import uuid
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from appliance.agent.state import AgentState
from appliance.engine.jsonable import checkpoint_ref, thread_state
from appliance.services.errors import Conflict, Invalid, NotFound
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadExists, ThreadQuery, ThreadRecord, ThreadStore


def thread_config(thread_id: uuid.UUID, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": str(thread_id)}
    if checkpoint_id:
        configurable |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {"configurable": configurable}


class ThreadService:
    def __init__(
        self,
        store: ThreadStore,
        graph: CompiledStateGraph,
        checkpointer: PooledPostgresSaver,
        runs: RunStore,
    ) -> None:
        self.store = store
        self.graph = graph
        self.checkpointer = checkpointer
        self.runs = runs

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
        return thread_state(await self.graph.aget_state(thread_config(thread_id)))["values"]

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
        unknown = set(values or {}) - set(AgentState.__annotations__)
        if unknown:
            raise Invalid(f"values has keys the agent's state does not: {', '.join(sorted(unknown))}")
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
