"""Runs and limits as the run queue's store takes them, for tests and benches
that queue runs without the API."""

from __future__ import annotations

import uuid
from typing import Any

from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import open_pool
from appliance.store.limits import LIMIT_NAMES, LimitSet
from appliance.store.migrations import migrate
from appliance.store.runs import NewRun


async def make_tables(url: str) -> None:
    """The appliance's tables and the conversation's, which the queueing looks at."""
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        await migrate(pool)
        await PooledPostgresSaver(pool).setup()
    finally:
        await pool.close()


def limit_set(**on: int) -> LimitSet:
    """Every limit off (0) but those given."""
    return LimitSet(**(dict.fromkeys(LIMIT_NAMES, 0) | on))


def new_run(thread_id: uuid.UUID, **changes: Any) -> NewRun:
    """A run of the built-in assistant on the tenant "default", queued behind any other."""
    fields = {
        "run_id": uuid.uuid4(),
        "thread_id": thread_id,
        "tenant": "default",
        "assistant_id": "agent",
        "kwargs": {"input": {"messages": [{"role": "user", "content": "hello"}]}},
        "metadata": {},
        "multitask_strategy": "enqueue",
    }
    return NewRun(**(fields | changes))
