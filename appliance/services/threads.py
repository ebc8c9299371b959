"""Threads as a tenant sees them: ownership, metadata, state and history."""

from __future__ import annotations

import uuid
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from appliance.services.errors import Conflict, NotFound
from appliance.services.jsonable import thread_state
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.locks import ThreadBusy, ThreadLocks, ThreadMissing
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
        locks: ThreadLocks,
    ) -> None:
        self.store = store
        self.graph = graph
        self.checkpointer = checkpointer
        self.locks = locks

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
        try:
            async with self.locks.hold(thread_id, tenant, wait=False):
                await self.checkpointer.adelete_thread(str(thread_id))
                await self.store.delete(tenant, thread_id)
        except ThreadMissing:
            raise NotFound(f"thread {thread_id} not found") from None
        except ThreadBusy:
            raise Conflict(f"thread {thread_id} has a run in progress; try again when it ends") from None

    async def search(self, tenant: str, query: ThreadQuery) -> list[ThreadRecord]:
        return await self.store.search(tenant, query)

    async def state(self, tenant: str, thread_id: uuid.UUID, checkpoint_id: str | None = None) -> dict[str, Any]:
        await self.require(tenant, thread_id)
        snapshot = await self.graph.aget_state(thread_config(thread_id, checkpoint_id))
        if checkpoint_id and not snapshot.config.get("configurable", {}).get("checkpoint_id"):
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
