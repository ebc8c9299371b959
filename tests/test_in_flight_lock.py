"""Which lock queueing a run (or taking an upload's slot) waits for: only the
one its limits in force need. The tenant's, when the tenant's limit of runs
in flight is on (its own or the appliance's); else the key's, when the key's
is on; else none, as nothing is counted. Each case is shown by holding that
lock in another session: what needs it waits until it is let go, what does
not is done meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import psycopg
import pytest

from appliance.store.audit import Actor
from appliance.store.database import open_pool
from appliance.store.limits import LimitSet, LimitStore, in_flight_locks
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadStore
from tests.support.queue import limit_set, make_tables, new_run

OFF = limit_set()
# High enough that no run here is refused: the limits are on, not reached.
KEY_ONLY = limit_set(key_runs_in_flight=100, key_uploads_in_flight=100)
BOTH = limit_set(
    key_runs_in_flight=100, key_uploads_in_flight=100, tenant_runs_in_flight=100, tenant_uploads_in_flight=100
)
# Long enough for a statement on an idle database; what waits for a held lock never ends in it.
DONE_WITHIN_S = 3.0
KEY = uuid.uuid4()


@pytest.fixture
async def stores(databases):
    await make_tables(url := databases.create())
    pool = await open_pool(url, min_size=1, max_size=4)
    try:
        yield url, RunStore(pool), ThreadStore(pool), LimitStore(pool)
    finally:
        await pool.close()


class HeldLock:
    """One of ``in_flight_locks``' locks, held by a session of its own until ``release``."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name

    async def __aenter__(self) -> HeldLock:
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self.conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 5151))", (self.name,))
        return self

    async def release(self) -> None:
        await self.conn.execute("SELECT pg_advisory_unlock_all()")

    async def __aexit__(self, *exc) -> None:
        await self.conn.close()


def lock_of(kind: str, which: str) -> str:
    return in_flight_locks(kind, "default", KEY)[f"{which}_lock"]


async def waits_for(url: str, lock: str, action: Awaitable) -> bool:
    """Whether ``action`` waits while ``lock`` is held (it must end once it is let go)."""
    async with HeldLock(url, lock) as held:
        task = asyncio.ensure_future(action)
        done, _ = await asyncio.wait([task], timeout=DONE_WITHIN_S)
        await held.release()
        await asyncio.wait_for(task, DONE_WITHIN_S)
        return not done


def queue_one(runs: RunStore, threads: ThreadStore, limits: LimitSet):
    async def queue() -> None:
        thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
        await runs.create(new_run(thread.thread_id, key_id=KEY), limits)

    return queue()


async def test_queueing_a_run_waits_only_for_the_lock_its_limits_need(stores):
    url, runs, threads, _ = stores
    tenant, key = lock_of("runs", "tenant"), lock_of("runs", "key")
    # Limits off: nothing is counted, nothing waits (before: the tenant's lock, always).
    assert not await waits_for(url, tenant, queue_one(runs, threads, OFF))
    assert not await waits_for(url, key, queue_one(runs, threads, OFF))
    # The key's limit only: its key's lock, not the tenant's, so other keys go on.
    assert not await waits_for(url, tenant, queue_one(runs, threads, KEY_ONLY))
    assert await waits_for(url, key, queue_one(runs, threads, KEY_ONLY))
    # The tenant's limit: the tenant's lock, which serialises its keys' runs too.
    assert await waits_for(url, tenant, queue_one(runs, threads, BOTH))
    assert not await waits_for(url, key, queue_one(runs, threads, BOTH))


async def test_a_tenants_own_limit_decides_the_lock(stores):
    """The tenant's own limits (``PUT /tenants/{t}/limits``) count as the appliance's do."""
    url, runs, threads, limits = stores
    tenant = lock_of("runs", "tenant")
    await limits.set_overrides("default", {"tenant_runs_in_flight": 3}, Actor.host())
    assert await waits_for(url, tenant, queue_one(runs, threads, OFF))
    await limits.set_overrides("default", {"tenant_runs_in_flight": 0}, Actor.host())
    assert not await waits_for(url, tenant, queue_one(runs, threads, BOTH))


async def test_an_upload_slot_waits_only_for_the_lock_its_limits_need(stores):
    url, _, _, limits = stores

    async def take(limit_set: LimitSet) -> None:
        async with limits.upload_slot(KEY, "default", limit_set):
            pass

    tenant, key = lock_of("uploads", "tenant"), lock_of("uploads", "key")
    assert not await waits_for(url, tenant, take(OFF))
    assert not await waits_for(url, tenant, take(KEY_ONLY))
    assert await waits_for(url, key, take(KEY_ONLY))
    assert await waits_for(url, tenant, take(BOTH))
