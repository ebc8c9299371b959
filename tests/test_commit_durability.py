"""Which of a turn's commits wait for the disk, shown by crashing PostgreSQL.

The WAL writer is held (SIGSTOP), so only a commit that waits for the disk
writes the WAL; then PostgreSQL crashes (the WAL writer killed: it ends every
process at once and starts again from the WAL on disk), losing what it held
in memory, as when the machine fails. A commit that waited is kept. One that
did not is lost, unless a later commit that waited carried it: PostgreSQL
writes its WAL in order.

- A run its caller is told of before its end (its id, a stream's first event)
  is kept as soon as it is queued. A run whose caller waits for its end hears
  nothing before it, so nothing of it waits for the disk until that end, which
  is kept with everything the run wrote before it.
- A run's checkpoints likewise wait for its end; one stored outside a run (a
  bare graph's, a state update) waits for the disk itself.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from langgraph.graph import START, StateGraph

from appliance.store.checkpointer import PooledPostgresSaver, thread_config
from appliance.store.database import open_pool
from appliance.store.migrations import migrate
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadStore
from tests.support.services import PrivatePostgres
from tests.support.turns import new_thread as new_thread_of
from tests.support.turns import user
from tests.test_run_round_trips import LIMITS, Said, new_run

pytestmark = pytest.mark.slow

SAID = {"said": ["hello", "echo"]}


@pytest.fixture
def postgres():
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@asynccontextmanager
async def stores(postgres: PrivatePostgres) -> AsyncIterator[tuple[RunStore, ThreadStore, PooledPostgresSaver]]:
    pool = await open_pool(postgres.url, min_size=1, max_size=2)
    try:
        await migrate(pool)
        saver = PooledPostgresSaver(pool)
        await saver.setup()
        yield RunStore(pool), ThreadStore(pool), saver
    finally:
        await pool.close()


def echo_graph(saver: PooledPostgresSaver):
    builder = StateGraph(Said)
    builder.add_node("echo", lambda state: {"said": ["echo"]})
    builder.add_edge(START, "echo")
    return builder.compile(checkpointer=saver)


async def new_thread(threads: ThreadStore) -> uuid.UUID:
    return (await threads.create("default", uuid.uuid4(), {}, if_exists="raise")).thread_id


async def test_a_run_whose_caller_waits_is_kept_with_its_end_and_an_announced_one_at_once(postgres):
    async with stores(postgres) as (runs, threads, saver):
        graph, worker = echo_graph(saver), uuid.uuid4()
        postgres.hold_wal_writer()
        told = (await runs.create(new_run(await new_thread(threads)), LIMITS)).run
        # A wait turn, up to its last step: queued, its graph run, its end not yet recorded.
        waited_thread = await new_thread(threads)
        waited = (await runs.create(new_run(waited_thread, start_on=worker, announced=False), LIMITS)).run
        assert waited.status == "running"
        async with saver.writes_with_next_checkpoint():
            await graph.ainvoke({"said": ["hello"]}, thread_config(waited_thread))
        assert (await graph.aget_state(thread_config(waited_thread))).values == SAID
        postgres.crash()

    async with stores(postgres) as (runs, threads, saver):
        assert (await runs.get("default", None, told.run_id)).status == "pending"
        # Nothing of the turn is left, as if the machine had failed before it began;
        # its caller, who heard nothing, lost its connection.
        assert await runs.get("default", None, waited.run_id) is None
        assert (await echo_graph(saver).aget_state(thread_config(waited_thread))).values == {}
        assert (await threads.get("default", waited_thread)).status == "idle"

        # The whole turn again, to its end: kept, with all it wrote before.
        postgres.hold_wal_writer()
        waited = (await runs.create(new_run(waited_thread, start_on=worker, announced=False), LIMITS)).run
        async with saver.writes_with_next_checkpoint():
            await echo_graph(saver).ainvoke({"said": ["hello"]}, thread_config(waited_thread))
        assert await runs.finish(waited, worker, "success", "idle")
        postgres.crash()

    async with stores(postgres) as (runs, threads, saver):
        assert (await runs.get("default", None, waited.run_id)).status == "success"
        assert (await echo_graph(saver).aget_state(thread_config(waited_thread))).values == SAID
        assert (await threads.get("default", waited_thread)).status == "idle"


async def test_a_checkpoint_stored_outside_a_run_waits_for_the_disk(postgres):
    async with stores(postgres) as (_, _, saver):
        graph, bare, updated = echo_graph(saver), thread_config(uuid.uuid4()), thread_config(uuid.uuid4())
        postgres.hold_wal_writer()
        await graph.ainvoke({"said": ["hello"]}, bare)
        await graph.aupdate_state(updated, {"said": ["set by hand"]})
        postgres.crash()

    async with stores(postgres) as (_, _, saver):
        graph = echo_graph(saver)
        assert (await graph.aget_state(bare)).values == SAID
        assert (await graph.aget_state(updated)).values == {"said": ["set by hand"]}


async def test_only_a_caller_waiting_for_the_end_is_not_told_of_its_run_before(scripted_app, monkeypatch):
    """What each way of starting a run tells its caller before the run's end."""
    store, announced = scripted_app.runtime.runs.store, []
    queue = store.create

    async def noted(new, limits):
        announced.append(new.announced)
        return await queue(new, limits)

    monkeypatch.setattr(store, "create", noted)
    client = scripted_app.client
    thread_id = await new_thread_of(client)
    for path, body in (
        (f"/threads/{thread_id}/runs/wait", user("hello")),  # answers at the end only, as a chat completion does
        ("/runs/wait", user("hello")),
        (f"/threads/{thread_id}/runs/stream", user("hello")),  # the run's id in the first event
        ("/runs/stream", user("hello")),
        ("/v1/chat/completions", {"model": "agent", "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/chat/completions", {"model": "agent", "messages": [{"role": "user", "content": "hi"}], "stream": True}),
        (f"/threads/{thread_id}/runs", user("hello")),  # the run itself, at once
    ):
        response = await client.post(path, json=body)  # each read whole: each run has ended but the last
        assert response.status_code == 200, response.text
    await client.get(f"/threads/{thread_id}/runs/{response.json()['run_id']}/join")
    assert announced == [False, False, True, True, False, True, True]


async def test_a_turns_checkpoints_are_committed_with_its_end(scripted_app):
    """A plain turn's checkpoints wait for its end and go in its transaction:
    one commit, which waits for the disk, keeps the answer and the run's end
    together (the checkpoints were a transaction of their own before)."""
    client = scripted_app.client
    thread_id = await new_thread_of(client)
    for text in ("hello", "and again"):
        response = await client.post(f"/threads/{thread_id}/runs/wait", json=user(text))
        assert response.status_code == 200, response.text
    async with scripted_app.runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT r.xmin::text AS ended,
                          array(SELECT DISTINCT c.xmin::text FROM checkpoints c
                                WHERE c.thread_id = r.thread_id::text
                                  AND c.metadata ->> 'run_id' = r.run_id::text) AS stored
                   FROM runs r WHERE r.thread_id = %s AND r.status = 'success'""",
                (thread_id,),
            )
        ).fetchall()
    assert len(rows) == 2
    for row in rows:
        assert row["stored"] == [row["ended"]], row
