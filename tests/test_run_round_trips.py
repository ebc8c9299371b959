"""What the run queue's writes of every turn cost in waits on PostgreSQL,
counted on the wire: queueing a run waits once, whatever its multitask
strategy (the limits' lock, the count, the thread's runs, the new run and
the commit go together), recording its end once, keeping a batch of stream
events once; deleting a thread's conversation (as a stateless run's is) once.
The limits' lock on queueing is held until that one wait ends: were it held
over a second, it would also be held while this process got round to the
first one's result, and every run of the tenant queued meanwhile would wait
that long too. An upload's slot, under its limits' lock, is taken in
one wait likewise."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated

import msgspec
import psycopg
import pytest
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from appliance.store.checkpointer import CONVERSATION_TABLES, PooledPostgresSaver, thread_config
from appliance.store.database import open_pool, pipelined_transaction
from appliance.store.limits import LimitStore, OverLimit
from appliance.store.runs import RunStore, ThreadBusy
from appliance.store.threads import ThreadStore
from tests.support.queue import limit_set, make_tables, new_run
from tests.support.wire import RoundTripCounter

LIMITS = limit_set(tenant_runs_in_flight=50)


@pytest.fixture
async def wired(databases):
    """A run store and a thread store whose one connection goes through the counter."""
    await make_tables(url := databases.create())
    async with RoundTripCounter(url) as wire:
        pool = await open_pool(wire.url, min_size=1, max_size=1)
        try:
            yield wire, RunStore(pool), ThreadStore(pool), url
        finally:
            await pool.close()


async def test_queueing_a_run_waits_once_and_recording_its_end_once(wired):
    wire, runs, threads, _ = wired
    thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
    worker = uuid.uuid4()

    wire.reset()
    created = await runs.create(new_run(thread.thread_id, start_on=worker, remember_assistant=True), LIMITS)
    assert wire.round_trips == 1
    assert (created.run.status, created.run.worker_id) == ("running", worker)

    wire.reset()
    assert await runs.finish(created.run, worker, "success", "idle")
    assert wire.round_trips == 1

    # What the transactions did is all there, committed.
    stored = await threads.get("default", thread.thread_id)
    assert (stored.status, stored.metadata) == ("idle", {"assistant_id": "agent"})
    assert (await runs.get("default", None, created.run.run_id)).status == "success"
    # A finish that no longer owns the run changes nothing, in as few waits.
    wire.reset()
    assert not await runs.finish(created.run, worker, "error", "idle")
    assert wire.round_trips == 1
    assert (await runs.get("default", None, created.run.run_id)).status == "success"


async def test_queueing_tells_a_run_starting_here_whether_its_thread_has_a_checkpoint(wired):
    """So the run's first read of its thread is made only when there is something to read."""
    _, runs, threads, url = wired
    worker = uuid.uuid4()
    blank = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
    begun = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
    writer = await open_pool(url, min_size=1, max_size=1)
    try:
        builder = StateGraph(Said)
        builder.add_node("echo", lambda state: {"said": ["echo"]})
        builder.add_edge(START, "echo")
        await builder.compile(checkpointer=PooledPostgresSaver(writer)).ainvoke(
            {"said": ["hello"]}, thread_config(begun.thread_id)
        )
    finally:
        await writer.close()

    first = await runs.create(new_run(blank.thread_id, start_on=worker), LIMITS)
    assert (first.run.status, first.blank) == ("running", True)
    # Waiting behind it: whatever it finds when it starts, it looks.
    queued = await runs.create(new_run(blank.thread_id, start_on=worker), LIMITS)
    assert (queued.run.status, queued.blank) == ("pending", False)
    later = await runs.create(new_run(begun.thread_id, start_on=worker), LIMITS)
    assert (later.run.status, later.blank) == ("running", False)


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_a_run_that_stops_those_before_it_is_queued_in_one_wait(wired, strategy):
    wire, runs, threads, _ = wired
    thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
    worker = uuid.uuid4()
    running = await runs.create(new_run(thread.thread_id, start_on=worker), LIMITS)
    waiting = await runs.create(new_run(thread.thread_id), LIMITS)

    wire.reset()
    created = await runs.create(new_run(thread.thread_id, multitask_strategy=strategy, start_on=worker), LIMITS)
    assert wire.round_trips == 1
    # It waits for the running run, which is told to stop; the waiting one is dropped.
    assert (created.run.status, created.stopping) == ("pending", [running.run.run_id])
    told = running.run.run_id
    assert (await runs.cancel_action(told), await runs.status(told)) == (strategy, "running")
    assert await runs.status(waiting.run.run_id) == ("interrupted" if strategy == "interrupt" else None)


async def test_a_refused_run_leaves_nothing_and_its_connection_clean(wired):
    wire, runs, threads, _ = wired
    thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
    first = await runs.create(new_run(thread.thread_id), LIMITS)

    # Refused by the appliance, mid-transaction (the thread's row and the tenant's lock held).
    with pytest.raises(ThreadBusy):
        await runs.create(new_run(thread.thread_id, multitask_strategy="reject"), LIMITS)
    # Refused by PostgreSQL at the commit's round trip: jsonb holds no NUL character.
    with pytest.raises(psycopg.DataError):
        await runs.create(new_run(thread.thread_id, metadata={"note": "a\u0000b"}, remember_assistant=True), LIMITS)

    assert (await threads.get("default", thread.thread_id)).metadata == {}
    listed = await runs.list("default", thread.thread_id, limit=10, offset=0, status=None)
    assert [r.run_id for r in listed] == [first.run.run_id]
    # The one connection goes on at once, with no transaction left open on it.
    second = await runs.create(new_run(thread.thread_id), LIMITS)
    assert second.run.status == "pending"


async def test_a_pipelined_transaction_is_committed_by_its_sync_whole_or_not_at_all(wired):
    """No BEGIN or COMMIT goes on the wire (each was a statement of the client's
    own): the Sync that ends the pipeline commits what the block sent. When
    PostgreSQL refuses a statement, or the block raises, none of it stays."""
    wire, runs, _, _ = wired
    async with runs.pool.connection() as conn:
        await conn.execute("CREATE TABLE said (word text PRIMARY KEY)")

    async def say(*words: str, then: Exception | None = None) -> None:
        async with runs.pool.connection() as conn, pipelined_transaction(conn):
            for word in words:
                await conn.execute("INSERT INTO said VALUES (%s)", (word,))
            if then is not None:
                raise then

    wire.reset()
    await say("one", "two")
    assert wire.round_trips == 1
    assert b"BEGIN" not in wire.sent and b"COMMIT" not in wire.sent
    with pytest.raises(psycopg.errors.UniqueViolation):
        await say("three", "one")
    with pytest.raises(RuntimeError):
        await say("four", then=RuntimeError("the caller changed its mind"))
    async with runs.pool.connection() as conn:
        rows = await (await conn.execute("SELECT word FROM said ORDER BY word")).fetchall()
    assert [r["word"] for r in rows] == ["one", "two"]


async def test_a_batch_of_stream_events_is_kept_whole_in_one_wait(wired):
    wire, runs, _, _ = wired
    run_id = uuid.uuid4()
    rows = [(run_id, 1, seq, "values", b'{"n": %d}' % seq) for seq in range(1, 51)]
    await runs.append_events([])  # the statement prepared on the connection, as after a server's first turn

    wire.reset()
    await runs.append_events(rows)
    assert wire.round_trips == 1

    kept = await runs.events_after(run_id, 1, 0)
    assert [(e.seq, e.data) for e in kept] == [(seq, data) for _, _, seq, _, data in rows]
    # A batch PostgreSQL refuses is kept not at all (one statement is one transaction).
    with pytest.raises(psycopg.Error):
        await runs.append_events([(run_id, 1, 51, "values", b"{}"), (run_id, 1, 52, "values\x00", b"{}")])
    assert len(await runs.events_after(run_id, 1, 0)) == 50


async def test_an_upload_slot_is_taken_in_one_wait_and_the_one_over_the_limit_refused(wired):
    wire, runs, _, _ = wired
    slots = LimitStore(runs.pool)
    one_each = msgspec.structs.replace(LIMITS, key_uploads_in_flight=1, tenant_uploads_in_flight=2)
    key, other = uuid.uuid4(), uuid.uuid4()

    wire.reset()
    async with slots.upload_slot(key, "default", one_each):
        assert wire.round_trips == 1
        with pytest.raises(OverLimit) as refused:
            async with slots.upload_slot(key, "default", one_each):
                pass
        assert (refused.value.name, refused.value.limit) == ("key_uploads_in_flight", 1)
        async with slots.upload_slot(other, "default", one_each):  # another key's, under the tenant's 2
            with pytest.raises(OverLimit) as refused:
                async with slots.upload_slot(None, "default", one_each):
                    pass
            assert (refused.value.name, refused.value.limit) == ("tenant_uploads_in_flight", 2)
    async with slots.upload_slot(key, "default", one_each):  # the slot was given back
        pass


class Said(TypedDict):
    said: Annotated[list[str], operator.add]


async def test_a_threads_conversation_is_deleted_in_one_wait(wired):
    """As each OpenAI chat completion's thread is, when its stateless run ends."""
    wire, runs, _, url = wired
    writer = await open_pool(url, min_size=1, max_size=4)
    try:
        saver = PooledPostgresSaver(writer)
        await saver.setup()
        builder = StateGraph(Said)
        builder.add_node("echo", lambda state: {"said": ["echo"]})
        builder.add_edge(START, "echo")
        graph = builder.compile(checkpointer=saver)
        kept, gone = thread_config(uuid.uuid4()), thread_config(uuid.uuid4())
        for config in (kept, gone, gone):
            await graph.ainvoke({"said": ["hello"]}, config)
    finally:
        await writer.close()
    saver = PooledPostgresSaver(runs.pool)
    await saver.adelete_thread(str(uuid.uuid4()))  # the statement prepared on the connection

    wire.reset()
    await saver.adelete_thread(gone["configurable"]["thread_id"])
    assert wire.round_trips == 1

    async with runs.pool.connection() as conn:
        for table in CONVERSATION_TABLES:
            counts = await (
                await conn.execute(
                    f"SELECT count(*) FILTER (WHERE thread_id = %s) AS gone, count(*) AS left FROM {table}",
                    (gone["configurable"]["thread_id"],),
                )
            ).fetchone()
            assert counts["gone"] == 0, table
            assert counts["left"] > 0 or table == "message_archive", table
    assert (await builder.compile(checkpointer=saver).aget_state(kept)).values == {"said": ["hello", "echo"]}


async def test_a_wait_turn_waits_on_postgresql_four_or_five_times_and_a_streamed_one_once_more(
    databases, chroma_url, tmp_path
):
    """A whole turn over HTTP, counted on the wire: the key, the thread with its
    tenant's knowledge bases, the run's queueing, (on a thread that has a
    conversation) the checkpoint it starts from, (streamed) the stream's events,
    and the run's end with the turn's checkpoints. Until 2026-12-07's night a
    thread's first turn also looked for a checkpoint, and the turn's
    checkpoints were a commit of their own: six waits, seven streamed."""
    from tests.support.app import serve_scripted
    from tests.support.turns import stream, user

    async with (
        RoundTripCounter(databases.create()) as wire,
        serve_scripted(tmp_path, wire.url, chroma_url, delay=0) as app,
    ):

        async def fewest(kind: str, begun: bool) -> int:
            """The fewest of three turns: the process's own upkeep (a heartbeat) may fall within one."""
            counts = []
            for _ in range(3):
                thread_id = (await app.client.post("/threads", json={})).json()["thread_id"]
                if begun:
                    await app.client.post(f"/threads/{thread_id}/runs/wait", json=user("hello"))
                wire.reset()
                if kind == "wait":
                    response = await app.client.post(f"/threads/{thread_id}/runs/wait", json=user("hello"))
                    assert response.status_code == 200, response.text
                else:
                    await stream(app.client, thread_id, user("hello") | {"stream_mode": ["values"]})
                counts.append(wire.round_trips)
            return min(counts)

        waits = {(kind, begun): await fewest(kind, begun) for kind in ("wait", "stream") for begun in (False, True)}
    assert waits == {("wait", False): 4, ("wait", True): 5, ("stream", False): 5, ("stream", True): 6}
