"""A turn's write transactions are planned once a connection: PostgreSQL uses
the generic plan of their statements from the first execution, where it
planned them afresh at each of the first five. Under a burst the pool grows by
dozens of new connections, and that planning was some 40% of PostgreSQL's CPU
(``bench.stream_load``). Other statements keep PostgreSQL's own choice."""

from __future__ import annotations

import uuid

from appliance.store.database import open_pool
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadStore
from tests.support.queue import limit_set, make_tables, new_run

TURNS = 4


async def test_a_new_connection_plans_the_queueing_once(databases):
    await make_tables(url := databases.create())
    pool = await open_pool(url, min_size=1, max_size=1)  # one connection: every statement below is on it
    try:
        threads, runs = ThreadStore(pool), RunStore(pool)
        for _ in range(TURNS):
            thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
            await threads.get_with_bases("default", thread.thread_id)
            await runs.create(new_run(thread.thread_id), limit_set())
        async with pool.connection() as conn:
            prepared = await (
                await conn.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
            ).fetchall()
    finally:
        await pool.close()
    plans = {p["statement"]: (p["generic_plans"], p["custom_plans"]) for p in prepared}
    (queueing,) = [plan for statement, plan in plans.items() if "verdict" in statement]
    assert queueing == (TURNS, 0)
    # A statement outside them: PostgreSQL's own choice, a plan made for each of the first five.
    (thread_read,) = [plan for statement, plan in plans.items() if "knowledge_base_id" in statement]
    assert thread_read == (0, TURNS)
