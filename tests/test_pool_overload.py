"""The connection pool tells a busy database from one that is gone: a burst
of work waits its turn in line, a pool where nothing comes back answers
PoolTimeout (the 503 of an outage) after its timeout, and a caller that gives
up in line loses no connection."""

from __future__ import annotations

import asyncio
import os
import resource
import time

import pytest
from psycopg_pool import PoolTimeout

from appliance.engine.execution import REQUEUE_DELAY_S
from appliance.store.database import open_pool

TIMEOUT_S = 0.3
# An app's pool of two connections that answers PoolTimeout once none has come back for TIMEOUT_S.
SMALL_POOL = {"db_pool_min_size": "2", "db_pool_max_size": "2", "db_pool_timeout_s": str(TIMEOUT_S)}


async def hold_both_connections(pool, seconds: float) -> asyncio.Task[None]:
    """Both connections of a SMALL_POOL taken now, given back after ``seconds`` (the task that does)."""
    held = [await pool.getconn(), await pool.getconn()]

    async def give_back() -> None:
        await asyncio.sleep(seconds)
        for conn in held:
            await pool.putconn(conn)

    return asyncio.create_task(give_back())


async def attempts_and_messages(app, thread_id: str) -> tuple[list[int], list[str]]:
    """The attempts of the thread's runs, oldest first, and the types of its state's messages."""
    async with app.runtime.pool.connection() as conn:
        runs = await conn.execute("SELECT attempt FROM runs WHERE thread_id = %s ORDER BY seq", (thread_id,))
        attempts = [row["attempt"] for row in await runs.fetchall()]
    state = (await app.client.get(f"/threads/{thread_id}/state")).json()
    return attempts, [message["type"] for message in state["values"]["messages"]]


async def test_a_burst_longer_than_the_timeout_is_served_in_turn_not_refused(databases):
    pool = await open_pool(databases.create(), min_size=2, max_size=2, timeout_s=TIMEOUT_S, queue_s=30)
    try:

        async def one() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.04)")

        started = time.monotonic()
        outcomes = await asyncio.gather(*(one() for _ in range(40)), return_exceptions=True)
        # 40 callers, two connections, 40 ms each: the last waits about 0.8 s, more than the timeout.
        assert time.monotonic() - started > 2 * TIMEOUT_S
        assert [o for o in outcomes if o is not None] == []
    finally:
        await pool.close()


async def test_a_pool_where_nothing_comes_back_times_out_as_an_outage(databases):
    pool = await open_pool(databases.create(), min_size=2, max_size=2, timeout_s=TIMEOUT_S, queue_s=30)
    held = [await pool.getconn(), await pool.getconn()]  # stuck: never returned while the caller waits
    try:
        await asyncio.sleep(TIMEOUT_S)
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            await pool.getconn()
        assert time.monotonic() - started < 3 * TIMEOUT_S, "an outage answers within its timeout, not the queue's"
    finally:
        for conn in held:
            await pool.putconn(conn)
        await pool.close()


async def test_a_caller_that_gives_up_in_line_loses_no_connection(databases):
    pool = await open_pool(databases.create(), min_size=2, max_size=2, timeout_s=TIMEOUT_S, queue_s=30)
    try:
        held = [await pool.getconn(), await pool.getconn()]
        waiters = [asyncio.create_task(pool.getconn()) for _ in range(5)]
        await asyncio.sleep(0.05)
        for conn in held:
            await pool.putconn(conn)  # handed to the first two in line...
        for waiter in waiters:
            waiter.cancel()  # ...who give up as it arrives, or before
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        for got in outcomes:
            if not isinstance(got, BaseException):
                await pool.putconn(got)
        async with pool.connection(timeout=1), pool.connection(timeout=1):
            pass  # both connections are back
    finally:
        await pool.close()


async def test_a_caller_cancelled_as_its_pipeline_starts_leaves_no_connection_in_pipeline_mode(databases, monkeypatch):
    """psycopg's wait yields to the loop once a generator is done, when the loop has
    been busy (MAX_BUSY_TIME): a cancel landing there, as pipeline mode is entered,
    skips the block's exit, and the connection comes back still in the mode. The
    pool must not hand it out again: its next caller's COPY was refused and its
    statements answered wrongly (a turn's run queued on a thread said missing)."""
    from psycopg import waiting

    monkeypatch.setattr(waiting, "MAX_BUSY_TIME", 0)  # the loop counts as busy on every wait
    pool = await open_pool(databases.create(), min_size=1, max_size=1, timeout_s=TIMEOUT_S)
    try:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE copied (n int)")

        async def turn() -> None:
            async with pool.connection() as conn, conn.pipeline(), conn.transaction():
                await conn.execute("SELECT 1")

        for yields in range(12):  # a cancel at each of the caller's first suspensions
            caller = asyncio.create_task(turn())
            for _ in range(yields):
                await asyncio.sleep(0)
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
            async with pool.connection(timeout=1) as conn:
                answer = await (await conn.execute("SELECT %s::int AS n", (yields,))).fetchone()
                assert answer == {"n": yields}, f"cancelled after {yields} yields: {answer}"
                async with conn.cursor().copy("COPY copied (n) FROM STDIN") as copy:
                    await copy.write_row((yields,))
    finally:
        await pool.close()


async def test_a_worker_keeps_its_heartbeat_while_the_pool_is_busy(databases, chroma_url, tmp_path):
    """The heartbeat has its own connection; the upkeep that waits in line for the
    pool (the sweep) must not hold it up, or other processes take the worker for dead."""
    import psycopg

    from tests.support.app import serve_scripted

    url = databases.create()
    settings = {
        "worker_heartbeat_s": "0.2",
        "worker_dead_after_s": "1",
        "db_pool_min_size": "2",
        "db_pool_max_size": "2",
        "db_pool_timeout_s": "3",
    }
    async with serve_scripted(tmp_path, url, chroma_url, **settings) as app:
        pool = app.runtime.pool
        held = [await pool.getconn(), await pool.getconn()]  # every pooled connection in use
        oldest = 0.0
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
                for _ in range(25):  # 2.5 s, longer than the sweep's wait for a connection
                    await asyncio.sleep(0.1)
                    row = await (
                        await look.execute("SELECT extract(epoch FROM now() - min(heartbeat_at)) FROM workers")
                    ).fetchone()
                    oldest = max(oldest, float(row[0]))
        finally:
            for conn in held:
                await pool.putconn(conn)
        assert oldest < 1, f"the heartbeat was {oldest:.1f} s old: the worker would be taken for dead"


async def test_a_run_ending_while_no_connection_comes_back_keeps_its_answer_in_its_attempt(
    databases, chroma_url, tmp_path
):
    """A run's end carries its last checkpoint. When the pool gives it no
    connection (PoolTimeout: nothing came back for the timeout), the end is
    asked again with it, as an end alone is: the run is not handed back to
    the queue, and its answer is not made a second time."""
    from tests.support.app import serve_scripted
    from tests.support.turns import new_thread, turn

    async with serve_scripted(tmp_path, databases.create(), chroma_url, delay=0, **SMALL_POOL) as app:
        pool, store = app.runtime.pool, app.runtime.runs.store
        finish, timed_out, releases = store.finish, [], []

        async def finish_while_the_pool_is_held(*args, **kwargs):
            if not timed_out:
                releases.append(await hold_both_connections(pool, 3 * TIMEOUT_S))
                try:
                    return await finish(*args, **kwargs)
                except PoolTimeout as exc:
                    timed_out.append(exc)
                    raise
            return await finish(*args, **kwargs)

        store.finish = finish_while_the_pool_is_held
        thread_id = await new_thread(app.client)
        await turn(app.client, thread_id, "hello")
        attempts, messages = await attempts_and_messages(app, thread_id)
        assert timed_out, "the end met no PoolTimeout: the test did not hold the pool"
        assert attempts == [1]
        assert messages == ["human", "ai"]


async def test_a_run_that_meets_a_pool_where_nothing_comes_back_goes_back_to_the_queue_and_ends(
    databases, chroma_url, tmp_path
):
    """Mid-run, a PoolTimeout hands the run back to the queue, from its last
    checkpoint. The pool still held, that too is asked again until it is
    taken: the worker is alive, so no sweep would hand the run back, and it
    stayed 'running' with nobody running it (its caller waited for ever)."""
    from tests.support.app import serve_scripted
    from tests.support.turns import new_thread, turn

    async with serve_scripted(tmp_path, databases.create(), chroma_url, delay=0, **SMALL_POOL) as app:
        pool, saver = app.runtime.pool, app.runtime.checkpointer
        thread_id = await new_thread(app.client)
        await turn(app.client, thread_id, "hello")
        read, releases = saver.aget_tuple, []

        async def read_while_the_pool_is_held(config):
            saver.aget_tuple = read  # once: the second turn's first read
            # Past the read's wait and the first try to requeue (each TIMEOUT_S, or two), before the
            # caller's first look at the run (1 s), which would meet the held pool too (a 503).
            releases.append(await hold_both_connections(pool, 2.5 * TIMEOUT_S))
            return await read(config)

        saver.aget_tuple = read_while_the_pool_is_held
        started = time.monotonic()
        await asyncio.wait_for(turn(app.client, thread_id, "again"), 30)
        # Handed back due REQUEUE_DELAY_S later, the run is taken again then, not at the worker's
        # next look of its own (worker_heartbeat_s, 5 s), which nothing else brings forward.
        assert time.monotonic() - started < REQUEUE_DELAY_S + 3
        attempts, messages = await attempts_and_messages(app, thread_id)
        assert releases, "the second turn never read its thread"
        assert attempts == [1, 2]
        assert messages == ["human", "ai", "human", "ai"]


async def test_the_pools_line_shows_in_the_metrics(databases, chroma_url, tmp_path):
    """An admin tells a busy database from a broken one on /metrics: requests in line, waits, errors."""
    from tests.support.app import serve_scripted

    settings = {"db_pool_min_size": "2", "db_pool_max_size": "2", "db_pool_timeout_s": "3"}
    async with serve_scripted(tmp_path, databases.create(), chroma_url, **settings) as app:
        pool, metrics = app.runtime.pool, app.runtime.metrics
        held = [await pool.getconn(), await pool.getconn()]
        in_line = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0.1)
        busy = metrics.exposition().decode()
        for conn in held:
            await pool.putconn(conn)
        await pool.putconn(await in_line)
        after = metrics.exposition().decode()
    assert sample(busy, 'appliance_db_pool_connections{state="idle"}') == 0
    assert sample(busy, "appliance_db_pool_waiting") >= 1
    assert sample(busy, "appliance_db_pool_waits_total") >= 1
    assert sample(after, "appliance_db_pool_errors_total") == 0


def sample(exposition: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(name + " "))


@pytest.fixture
def descriptors_past_select():
    """This process with more than 1,024 descriptors open, as a server holding a
    thousand streams is: a connection opened now gets a descriptor select() refuses."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"this machine allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_connection_past_descriptor_1024_is_handed_out_at_once(databases, descriptors_past_select):
    pool = await open_pool(databases.create(), min_size=1, max_size=1, timeout_s=TIMEOUT_S, queue_s=30)
    try:
        started = time.monotonic()
        for _ in range(20):  # every checkout checks the connection first
            async with pool.connection() as conn:
                assert conn.fileno() >= 1024
                await conn.execute("SELECT 1")
        assert time.monotonic() - started < 2, "each checkout waits on nothing"
    finally:
        await pool.close()
