"""PostgreSQL: where the URL comes from (the settings, or an embedded server
under the data directory) and the connection pool everything shares."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection, pq
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from appliance.settings import Settings

log = logging.getLogger(__name__)


# A statement and its parameters, to be sent in a transaction of another's (``RunStore.finish``).
Statement = tuple[str, dict[str, Any]]


def compact_statement(sql: str) -> str:
    """``sql`` without its ``--`` comments and runs of whitespace (for a
    statement with no string literal holding either). psycopg finds a
    statement's ``%(name)s`` placeholders once and keeps the result, but only
    for a statement of at most 4 KB (``MAX_CACHED_STATEMENT_LENGTH``): a longer
    one is read again at every execution, some 0.2-0.4 ms of the client's CPU on
    2 cores (bench.run_bookkeeping)."""
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


# A select-list item that commits its statement's transaction without
# waiting for the WAL to reach the disk (``synchronous_commit`` off, for that
# transaction only). PostgreSQL writes the WAL in order, so the next commit
# that does wait makes it durable too (any statement's; else the WAL writer
# flushes it within 3 x its wal_writer_delay, 600 ms by default). A crash of
# the machine before then loses it, with what was committed after it: the
# database comes back as it was a moment earlier, consistent. For what no one
# has been told of yet: a request's count, a run whose caller hears only of
# its end (which waits), a run's checkpoints before its end.
UNFLUSHED_COMMIT = "set_config('synchronous_commit', 'off', true)"


# A select-list item after which the statements of its transaction use their
# generic plans from the first execution. PostgreSQL plans a prepared statement
# afresh at each of its first five executions on a connection, then settles on
# its generic plan. Under a burst the pool grows by dozens of new connections,
# and planning a turn's write transactions (the queueing statement took 4 ms on
# a loaded host) was some 40% of PostgreSQL's CPU (bench.stream_load). Their
# statements find rows by key, where the generic plan is the one it settles on.
# Only for the transaction: searches and pages of lists, whose best plan can
# depend on their parameters, keep PostgreSQL's choice.
GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"


@asynccontextmanager
async def pipelined_transaction(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A transaction in pipeline mode, as a turn's writes (queueing a run,
    recording its end) and an upload's slot are made: the statements sent in
    the block are one transaction, committed by the Sync psycopg sends as the
    pipeline ends (in the extended query protocol a transaction lasts until the
    Sync, on an autocommit connection as the pool's are). So it waits on
    PostgreSQL once for each result read inside it, and once to commit; a
    result read after it comes with the commit. A lock taken inside is held
    only while PostgreSQL runs the statements, unless a result is read inside.
    No BEGIN or COMMIT is sent: each was a statement of its own, some 0.1 ms of
    the client's CPU. (psycopg's ``transaction()`` in a pipeline syncs as it
    opens and as it closes: each turn's two transactions waited eleven times
    where three do.) Each statement still runs in order, after the locks before it.

    When the block raises (the caller cancelled, a result refused), the
    connection is closed before that Sync: PostgreSQL rolls back what it has
    received, nothing of it is committed, and the pool replaces the connection."""
    if not conn.autocommit:
        raise ValueError("a pipelined transaction needs an autocommit connection (its Sync commits it)")
    async with conn.pipeline():
        try:
            yield conn
        except BaseException:
            await conn.close()
            raise


EMBEDDED_DATABASE = "appliance"


class EmbeddedPostgres:
    """A private PostgreSQL server (pgserver) under the data directory. It is
    stopped when the last process using it exits; after a crash the next start
    finds it still running and reuses it."""

    def __init__(self, data_path: Path) -> None:
        # pgserver keeps its inter-process lock under XDG_RUNTIME_DIR, unset under systemd and sudo.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(data_path / "run"))
        (data_path / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0 and shutil.which("useradd") is None:
            # As root, pgserver runs PostgreSQL as its own user, created with useradd (in sbin).
            os.environ["PATH"] = os.pathsep.join(p for p in (os.environ.get("PATH"), "/usr/sbin", "/sbin") if p)
        import pgserver
        import psutil
        from pgserver.utils import DiskList

        data_path.mkdir(parents=True, exist_ok=True)
        pgdata = data_path / "postgres"
        # pgserver stops the server when the last process using it exits, counting
        # processes in this list; one that was killed never leaves it, so the
        # server would outlive every later graceful stop. Drop the dead first.
        handles = DiskList(pgdata / ".handle_pids.json")
        if handles.path.exists():
            with pgserver.PostgresServer._lock:
                handles.put([pid for pid in handles.get() if psutil.pid_exists(pid)])
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.server.psql(
            f"SELECT 'CREATE DATABASE {EMBEDDED_DATABASE}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}')\\gexec"
        )

    @property
    def url(self) -> str:
        return self.server.get_uri(EMBEDDED_DATABASE)

    def release(self) -> None:
        """Give up this process's handle; the last one out stops the server.
        Called explicitly: uvicorn ends on a re-raised SIGTERM, so atexit never runs."""
        self.server.cleanup()


def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_path)
    log.info("embedded PostgreSQL is running", extra={"url": embedded.url})
    return embedded.url, embedded


@contextmanager
def database_in_use(settings: Settings) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """The database's URL for the duration; an embedded server started for it is released after."""
    url, embedded = database_url(settings)
    try:
        yield url, embedded
    finally:
        if embedded is not None:
            embedded.release()


# What AsyncPostgresSaver needs of every connection.
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}

_encode_json = msgspec.json.Encoder().encode


def encode_json(value: Any) -> bytes:
    """A json or jsonb parameter, encoded by msgspec: a checkpoint (some 2 KB,
    four a turn) in about 2 µs, where ``json.dumps`` takes 15. What msgspec
    refuses (a lone surrogate) goes to ``json.dumps`` as before, and PostgreSQL
    says what it says. It writes NaN and infinities as null, which PostgreSQL
    refused from ``json.dumps``."""
    try:
        return _encode_json(value)
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return json.dumps(value).encode()


async def configure_connection(conn: AsyncConnection[Any]) -> None:
    """Each pool connection's adapters: json and jsonb parameters by ``encode_json``."""
    set_json_dumps(encode_json, conn)


async def check_idle_connection(conn: AsyncConnection[Any]) -> None:
    """A pool's check without a round trip: a server that ended an idle
    connection (a restart, an administrator's terminate) has said so on its
    socket, so only a connection with something to read is asked (and, dead,
    replaced). A round trip on every checkout cost a turn some 20 of them."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if has_input(conn.fileno()):
        await AsyncConnectionPool.check_connection(conn)


def has_input(fd: int) -> bool:
    """Whether ``fd`` has something to read, now. poll, not select: select takes
    no descriptor from 1,024 up, and a server with a thousand streams open gets
    its new database connections there (select raised for each, and every
    caller handed one backed off for minutes while it sat ready in the pool)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class BusyAwarePool(AsyncConnectionPool):
    """A pool whose callers tell a busy database from one that is gone.

    A caller that finds every connection in use waits in line while the line
    moves, up to ``queue_s``: under a burst, connections keep coming back and
    every request is served in its turn. When no healthy connection has come
    back for ``timeout`` seconds (PostgreSQL restarting, unreachable, or every
    connection stuck), the caller is told PoolTimeout (a 503) as before."""

    def __init__(self, *args: Any, queue_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_s = queue_s
        self._last_return = time.monotonic()
        self._returning: set[asyncio.Future[None]] = set()

    async def getconn(self, timeout: float | None = None) -> AsyncConnection[Any]:
        stall_s = self.timeout if timeout is None else timeout
        if self.queue_s <= stall_s:
            return await super().getconn(timeout)
        started = time.monotonic()
        if self.get_stats().get("pool_available", 0):
            try:
                return await super().getconn(timeout)  # most calls: a connection is ready
            except PoolTimeout:
                if self._stalled_s() >= stall_s:
                    raise  # another caller took the ready one, and none has come back since
        return await self._wait_in_line(stall_s, budget_s=started + self.queue_s - time.monotonic())

    async def _wait_in_line(self, stall_s: float, *, budget_s: float) -> AsyncConnection[Any]:
        # One place in line for the whole wait (a retry would go to the back).
        waiting = asyncio.ensure_future(super().getconn(budget_s))
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=stall_s)
                if done:
                    return waiting.result()
                if (stalled := self._stalled_s()) >= stall_s:
                    raise PoolTimeout(f"no connection came back to the pool for {stalled:.1f} s")
        except BaseException:
            waiting.cancel()
            waiting.add_done_callback(self._give_back)
            raise

    def _stalled_s(self) -> float:
        return time.monotonic() - self._last_return

    def _give_back(self, waiting: asyncio.Future[AsyncConnection[Any]]) -> None:
        """A connection that reached a caller who had given up goes back to the pool
        (the cancel can come after it was handed over, or be lost in wait_for)."""
        if not waiting.cancelled() and waiting.exception() is None:
            returning = asyncio.ensure_future(self.putconn(waiting.result()))
            self._returning.add(returning)
            returning.add_done_callback(self._returning.discard)

    async def putconn(self, conn: AsyncConnection[Any]) -> None:
        if not conn.closed and conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # A caller cancelled as psycopg entered pipeline mode (its wait yields to the
            # loop once the mode is on, before the block starts) leaves the connection
            # in it: handed out again, it would answer the next caller's statements
            # wrongly or hang. Closed, the pool replaces it.
            log.warning("closing a connection returned in pipeline mode")
            await conn.close()
        if not (conn.closed or conn.broken):
            self._last_return = time.monotonic()
        await super().putconn(conn)


async def open_pool(
    url: str, *, min_size: int, max_size: int, wait_s: float = 30, timeout_s: float = 5, queue_s: float = 0
) -> AsyncConnectionPool:
    """A started pool; ``wait_s`` bounds the wait for the server to accept connections at start,
    ``timeout_s`` a caller's wait for a connection later while none comes back (then
    PoolTimeout: a 503, not a hang), ``queue_s`` its wait while the pool is busy but moving."""
    pool = BusyAwarePool(
        url,
        queue_s=queue_s,
        min_size=min_size,
        max_size=max_size,
        kwargs=CONNECTION_KWARGS,
        open=False,
        name="appliance",
        timeout=timeout_s,
        # A connection is checked as it is handed out, so the first requests after
        # PostgreSQL restarted get a fresh one instead of a dead one.
        check=check_idle_connection,
        configure=configure_connection,
    )
    await pool.open(wait=True, timeout=wait_s)
    return pool
