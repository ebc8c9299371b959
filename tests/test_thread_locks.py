"""The per-thread run lock lives in PostgreSQL, so it holds across processes
and dies with a crashed process's session."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from appliance.store.locks import ThreadBusy, ThreadLocks
from appliance.store.threads import ThreadStore


async def status(store: ThreadStore, tenant: str, thread_id: uuid.UUID) -> str:
    return (await store.get(tenant, thread_id)).status


async def test_a_lock_held_by_another_process_blocks_reject_and_survives_the_stale_sweep(scripted_app):
    runtime = scripted_app.runtime
    store, locks = ThreadStore(runtime.pool), ThreadLocks(runtime.pool)
    thread_id = uuid.uuid4()
    await store.create("default", thread_id, {}, if_exists="raise")
    url = runtime.pool.conninfo

    # Another process: its own session holds the advisory lock and marked the thread busy.
    other = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await other.execute("SELECT pg_advisory_lock(thread_lock_key(%s))", (thread_id,))
    await other.execute("UPDATE threads SET status = 'busy' WHERE thread_id = %s", (thread_id,))

    with pytest.raises(ThreadBusy):
        async with locks.hold(thread_id, "default", wait=False):
            pass
    await store.reset_stale_busy()
    assert await status(store, "default", thread_id) == "busy"  # its holder is alive

    # The other process dies: PostgreSQL ends its session and the lock goes with it.
    await other.close()
    await store.reset_stale_busy()
    assert await status(store, "default", thread_id) == "idle"
    async with locks.hold(thread_id, "default", wait=False):
        assert await status(store, "default", thread_id) == "busy"
    assert await status(store, "default", thread_id) == "idle"
