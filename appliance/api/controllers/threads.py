"""Threads: create, read, update, delete, search; state and history."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from appliance.api.schemas import (
    HistoryQuery,
    Thread,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    ThreadState,
    ThreadStateUpdate,
    ThreadStateUpdated,
)
from appliance.runtime import Runtime
from appliance.services.threads import ConversationPage
from appliance.store.threads import ThreadQuery, ThreadRecord


def to_thread(record: ThreadRecord, values: dict | None = None) -> Thread:
    return Thread(
        thread_id=record.thread_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        metadata=record.metadata,
        status=record.status,
        values=values,
    )


class ThreadController(Controller):
    path = "/threads"
    tags = ["threads"]

    @post("/", status_code=200, summary="Create a thread")
    async def create(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], data: JSONBody[ThreadCreate]
    ) -> Thread:
        record = await runtime.threads.create(tenant, data.thread_id, data.metadata, data.if_exists)
        return to_thread(record, {})

    @post("/search", status_code=200, summary="Search the tenant's threads")
    async def search(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], data: JSONBody[ThreadSearch]
    ) -> list[Thread]:
        query = ThreadQuery(
            ids=data.ids,
            metadata=data.metadata,
            status=data.status,
            limit=data.limit,
            offset=data.offset,
            sort_by=data.sort_by,
            descending=data.sort_order == "desc",
        )
        records = await runtime.threads.search(tenant, query)
        if data.select is not None and "values" not in data.select:
            return [to_thread(r) for r in records]
        values = await runtime.threads.values_of([r.thread_id for r in records])
        return [to_thread(r, v) for r, v in zip(records, values, strict=True)]

    @get("/{thread_id:uuid}", summary="Get a thread")
    async def read(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], thread_id: FromPath[uuid.UUID]
    ) -> Thread:
        record = await runtime.threads.require(tenant, thread_id)
        return to_thread(record, await runtime.threads.values(thread_id))

    @patch("/{thread_id:uuid}", summary="Merge metadata into a thread")
    async def update(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[ThreadPatch],
    ) -> Thread:
        record = await runtime.threads.patch(tenant, thread_id, data.metadata)
        return to_thread(record, await runtime.threads.values(thread_id))

    @delete("/{thread_id:uuid}", summary="Delete a thread and its whole history")
    async def remove(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], thread_id: FromPath[uuid.UUID]
    ) -> None:
        await runtime.threads.delete(tenant, thread_id)

    @get("/{thread_id:uuid}/state", summary="The thread's latest state")
    async def state(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], thread_id: FromPath[uuid.UUID]
    ) -> Response[ThreadState]:
        # Already encoded: a long thread's state is sent as kept (store/state_renderings.py).
        return Response(await runtime.threads.latest_state_json(tenant, thread_id), media_type=MediaType.JSON)

    @get("/{thread_id:uuid}/state/{checkpoint_id:str}", summary="The thread's state at a checkpoint")
    async def state_at(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        checkpoint_id: FromPath[str],
    ) -> ThreadState:
        return ThreadState(**await runtime.threads.state(tenant, thread_id, checkpoint_id))

    @post("/{thread_id:uuid}/state", status_code=200, summary="Change the thread's state, as if a node had")
    async def update_state(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[ThreadStateUpdate],
    ) -> ThreadStateUpdated:
        checkpoint_id = data.checkpoint_id or (data.checkpoint.checkpoint_id if data.checkpoint else None)
        checkpoint = await runtime.threads.update_state(tenant, thread_id, data.values, data.as_node, checkpoint_id)
        return ThreadStateUpdated(checkpoint=checkpoint)

    @post("/{thread_id:uuid}/copy", status_code=200, summary="Copy a thread with its whole history")
    async def copy(
        self, runtime: NamedDependency[Runtime], tenant: NamedDependency[str], thread_id: FromPath[uuid.UUID]
    ) -> Thread:
        record = await runtime.threads.copy(tenant, thread_id)
        return to_thread(record, await runtime.threads.values(record.thread_id))

    @get("/{thread_id:uuid}/history", summary="The thread's past states, newest first")
    async def history(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 10,
        before: FromQuery[str | None] = None,
    ) -> list[ThreadState]:
        states = await runtime.threads.history(tenant, thread_id, limit=limit, before=before)
        return [ThreadState(**s) for s in states]

    @get("/{thread_id:uuid}/messages", summary="The whole conversation, a page at a time, archived turns too")
    async def messages(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=1000, description="How many messages at most")] = 100,
        before: Annotated[
            int | None,
            QueryParameter(
                description="Where the page ends: before this position (default: the end)",
                schema_extra={"minimum": 0},  # checked by the service (as ge=0 it left the description)
            ),
        ] = None,
    ) -> ConversationPage:
        """The state holds the conversation's latest turns (its window); older ones
        are folded into its summary and archived. This reads any part of the whole."""
        return await runtime.threads.messages(tenant, thread_id, limit=limit, before=before)

    @post("/{thread_id:uuid}/history", status_code=200, summary="Search the thread's past states")
    async def history_search(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[HistoryQuery],
    ) -> list[ThreadState]:
        states = await runtime.threads.history(
            tenant,
            thread_id,
            limit=data.limit,
            before=data.before.checkpoint_id if data.before else None,
            metadata=data.metadata,
        )
        return [ThreadState(**s) for s in states]
