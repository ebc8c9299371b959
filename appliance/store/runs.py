"""Runs as rows in PostgreSQL: the queue, the workers that take from it, and
the events each run streams.

Every decision that must hold across processes is made by one statement or
one transaction here: a thread's runs are created under a lock on its row (so
``reject`` and ``interrupt`` see every run before them), runs are claimed with
``FOR UPDATE SKIP LOCKED`` and a unique index keeps one running per thread,
and a finish only counts when the worker still owns the attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.arrays import ByteaArray, Int4Array, TextArray, UuidArray, as_columns
from appliance.store.database import (
    GENERIC_PLANS,
    UNFLUSHED_COMMIT,
    Statement,
    compact_statement,
    pipelined_transaction,
)
from appliance.store.limits import LimitSet, OverLimit, in_flight_check, in_flight_lock, in_flight_locks

RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
CancelAction = Literal["interrupt", "rollback"]
INFLIGHT = ("pending", "running")
# When a key at its runs-in-flight limit is told to try again: about one short turn.
RUN_RETRY_AFTER_S = 5

# Channels of LISTEN/NOTIFY: a run is waiting, a run must stop, a run ended.
QUEUE_CHANNEL = "appliance_run_queue"
CANCEL_CHANNEL = "appliance_run_cancel"
DONE_CHANNEL = "appliance_run_done"

_COLUMNS = (
    "run_id, thread_id, tenant, assistant_id, status, kwargs, metadata, multitask_strategy, "
    "attempt, worker_id, cancel_action, error, created_at, updated_at"
)
_R_COLUMNS = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))

# What stopping runs writes, for those ``{which}`` names: a waiting run ends
# (interrupt) or goes (rollback) at once; a running one is marked for its
# worker, which stops it. Each returns the runs it changed, to be told.
_INTERRUPT_WAITING = """UPDATE runs SET status = 'interrupted', cancel_action = 'interrupt',
                                       updated_at = now(), ended_at = now()
                        WHERE {which} AND status = 'pending' RETURNING run_id"""
_ERASE_WAITING = "DELETE FROM runs WHERE {which} AND status = 'pending' RETURNING run_id"
_MARK_RUNNING = """UPDATE runs SET cancel_action = %(action)s, updated_at = now()
                   WHERE {which} AND status = 'running' RETURNING run_id"""
# The thread's waiting runs, when the run being queued was admitted.
_WAITING_HERE = (
    "(SELECT outcome FROM verdict) = 'queued' AND run_id IN (SELECT run_id FROM inflight WHERE status = 'pending')"
)

_LOCK_RUNS = in_flight_lock("runs")
# Queueing a run, decided by PostgreSQL after the limits' lock and the
# thread's row lock, in the snapshot of this statement: the runs in flight
# against the limits (``in_flight_check``), the thread (its tenant's), the
# multitask strategy. When the outcome is 'queued': the thread's waiting runs
# dropped (interrupt ends them, rollback erases them), the thread's first
# assistant remembered, and the run inserted, running on ``start_on`` when the
# thread is idle and the run due now (claimed as ``claim`` would, its thread
# busy), else waiting, with the queue told. Each refusal changes nothing.
# Compacted: written out, it is longer than psycopg keeps read.
_QUEUE_RUN = compact_statement(f"""
WITH {in_flight_check("runs", "FROM runs WHERE tenant = %(tenant)s AND status IN ('pending', 'running')")},
inflight AS (SELECT run_id, status FROM runs WHERE thread_id = %(thread)s AND status IN ('pending', 'running')),
verdict AS (
    SELECT CASE WHEN over_limit.name IS NOT NULL THEN over_limit.name
                WHEN NOT EXISTS (SELECT 1 FROM threads WHERE thread_id = %(thread)s AND tenant = %(tenant)s)
                THEN 'thread_missing'
                WHEN %(strategy)s = 'reject' AND EXISTS (SELECT 1 FROM inflight) THEN 'thread_busy'
                ELSE 'queued' END AS outcome,
           over_limit.cap,
           %(start_on)s::uuid IS NOT NULL AND %(delay)s <= 0 AND NOT EXISTS (SELECT 1 FROM inflight) AS starts
      FROM over_limit),
dropped AS ({_INTERRUPT_WAITING.format(which=f"%(strategy)s = 'interrupt' AND {_WAITING_HERE}")}),
erased AS ({_ERASE_WAITING.format(which=f"%(strategy)s = 'rollback' AND {_WAITING_HERE}")}),
-- A thread whose first assistant this is keeps it (one of another process's
-- runs may have set one meanwhile: the first one stays); a run starting here makes it busy.
thread AS (
    UPDATE threads
       SET metadata = CASE WHEN %(remember)s AND NOT metadata ? 'assistant_id'
                           THEN metadata || jsonb_build_object('assistant_id', %(assistant)s::text)
                           ELSE metadata END,
           status = CASE WHEN (SELECT starts FROM verdict) THEN 'busy' ELSE status END,
           updated_at = now()
     WHERE thread_id = %(thread)s AND (SELECT outcome FROM verdict) = 'queued'
       AND ((%(remember)s AND NOT metadata ? 'assistant_id') OR (SELECT starts FROM verdict))),
run AS (
    INSERT INTO runs (run_id, thread_id, tenant, assistant_id, status, kwargs, metadata,
                      multitask_strategy, available_at, key_id, worker_id, attempt)
    SELECT %(run)s, %(thread)s, %(tenant)s, %(assistant)s, CASE WHEN starts THEN 'running' ELSE 'pending' END,
           %(kwargs)s, %(metadata)s, %(strategy)s, now() + %(delay)s * interval '1 second', %(key)s,
           CASE WHEN starts THEN %(start_on)s::uuid END, CASE WHEN starts THEN 1 ELSE 0 END
      FROM verdict WHERE outcome = 'queued'
    RETURNING {_COLUMNS})
SELECT verdict.outcome, verdict.cap, run.*,
       (SELECT count(pg_notify(%(done)s, run_id::text)) FROM (TABLE dropped UNION ALL TABLE erased) AS gone)
           AS told_done,
       CASE WHEN run.status = 'pending' THEN pg_notify(%(queue)s, '') END AS told_queue,
       -- A run starting here on a thread without a checkpoint need not look for one.
       run.status = 'running' AND NOT EXISTS (SELECT FROM checkpoints WHERE thread_id = %(thread)s::text) AS blank,
       -- A run whose caller hears only of its end: that end's commit waits for the disk, and takes this one with it.
       CASE WHEN NOT %(announced)s THEN {UNFLUSHED_COMMIT} END AS unflushed
  FROM verdict LEFT JOIN run ON true""")

# With interrupt or rollback, after the waiting runs were dropped: the thread's
# running runs told to stop, when the new run was queued (its row is there).
# Apart from the statement above, so that one a worker claimed meanwhile, which
# that statement could no longer drop, is seen running here.
_STOP_RUNNING = f"""
WITH stopped AS ({
    _MARK_RUNNING.format(
        which="thread_id = %(thread)s AND run_id <> %(run)s AND EXISTS (SELECT 1 FROM runs WHERE run_id = %(run)s)"
    )
})
SELECT run_id, pg_notify(%(cancel)s, run_id::text) FROM stopped"""

# A batch of stream events, as columns.
_APPEND_EVENTS = """INSERT INTO run_events (run_id, attempt, seq, event, data)
                    SELECT * FROM unnest(%(run_ids)s, %(attempts)s, %(seqs)s, %(events)s, %(data)s)"""


class RunRecord(msgspec.Struct, frozen=True):
    run_id: uuid.UUID
    thread_id: uuid.UUID
    tenant: str
    assistant_id: str
    status: RunStatus
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    multitask_strategy: str
    attempt: int
    worker_id: uuid.UUID | None
    cancel_action: CancelAction | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @property
    def done(self) -> bool:
        return self.status not in INFLIGHT


class NewRun(msgspec.Struct, frozen=True, kw_only=True):
    run_id: uuid.UUID
    thread_id: uuid.UUID
    tenant: str
    assistant_id: str
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    multitask_strategy: str
    delay_s: float = 0
    # The key that asked for it (None: the host's CLI), counted in its runs in flight.
    key_id: uuid.UUID | None = None
    # A worker of the creating process with a slot held for the run: it starts
    # there at once when its thread is idle and it is due now (else it queues).
    start_on: uuid.UUID | None = None
    # The thread has no assistant of its own yet: it takes this run's
    # (metadata.assistant_id), in the run's own transaction.
    remember_assistant: bool = False
    # The caller is told of the run before it ends (its id, a stream's first
    # event), so its queueing waits for the disk. Else (a caller waiting for
    # its answer) only the run's end does: the run is lost with its caller's
    # connection if the machine fails before.
    announced: bool = True


class ThreadBusy(Exception):
    """``reject``: the thread has a run pending or running."""


class ThreadMissing(Exception):
    pass


class Created(msgspec.Struct, frozen=True):
    run: RunRecord
    # Running runs told to stop because of the new run's strategy.
    stopping: list[uuid.UUID]
    # The run starts here, on a thread that had no checkpoint when it was queued.
    blank: bool = False


class Claimed(msgspec.Struct, frozen=True):
    runs: list[RunRecord]
    # Seconds until the first waiting run that may start next is due (None: none waits for a time).
    next_due_s: float | None


class StoredEvent(msgspec.Struct, frozen=True, array_like=True):
    attempt: int
    seq: int
    event: str
    data: bytes


def _record(row: dict[str, Any]) -> RunRecord:
    """A run's row, with any other columns its statement returned (outcome, blank, seq...) left out."""
    return RunRecord(**{name: row[name] for name in RunRecord.__struct_fields__})


class RunStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    # Creating and cancelling ---------------------------------------------------

    async def create(self, new: NewRun, limits: LimitSet) -> Created:
        """Queue a run on its thread, applying its multitask strategy to the
        runs already there, in one transaction; OverLimit when the key or the
        tenant has as many runs in flight as ``limits`` (with the tenant's own) allow.
        A run with ``start_on`` on an idle thread is created running on that
        worker (claimed in the same transaction); any other waits in the queue.

        The whole transaction goes to PostgreSQL at once and waits on it once:
        the decisions are made there (``_QUEUE_RUN``), so the limits' lock (when
        a limit is on: ``in_flight_lock``) is never held while this process gets
        round to reading a result, which under load held every other run of
        the tenant back as long."""
        params = {
            "run": new.run_id,
            "thread": new.thread_id,
            "tenant": new.tenant,
            "assistant": new.assistant_id,
            "kwargs": Jsonb(new.kwargs),
            "metadata": Jsonb(new.metadata),
            "strategy": new.multitask_strategy,
            "delay": new.delay_s,
            "key": new.key_id,
            "start_on": new.start_on,
            "remember": new.remember_assistant,
            "announced": new.announced,
            "key_cap": limits.key_runs_in_flight,
            "tenant_cap": limits.tenant_runs_in_flight,
            "queue": QUEUE_CHANNEL,
            "done": DONE_CHANNEL,
        }
        stops = new.multitask_strategy in ("interrupt", "rollback")
        async with self.pool.connection() as conn:
            async with pipelined_transaction(conn):
                await conn.execute(_LOCK_RUNS, params | in_flight_locks("runs", new.tenant, new.key_id))
                # The thread's row first, as ``_end`` locks it; its runs are read after, by the statement below.
                await conn.execute(
                    f"SELECT {GENERIC_PLANS} FROM threads WHERE thread_id = %s AND tenant = %s FOR UPDATE",
                    (new.thread_id, new.tenant),
                )
                queued = await conn.execute(_QUEUE_RUN, params)
                stopped = None
                if stops:
                    told = {"action": new.multitask_strategy, "thread": new.thread_id, "run": new.run_id}
                    stopped = await conn.execute(_STOP_RUNNING, told | {"cancel": CANCEL_CHANNEL})
            # Read after the commit, which went with them.
            row = await queued.fetchone()
            stopping = [r["run_id"] for r in await stopped.fetchall()] if stopped is not None else []
        outcome = row.pop("outcome")
        if outcome in ("key_runs_in_flight", "tenant_runs_in_flight"):
            raise OverLimit(outcome, row["cap"], RUN_RETRY_AFTER_S)
        if outcome == "thread_missing":
            raise ThreadMissing(str(new.thread_id))
        if outcome == "thread_busy":
            raise ThreadBusy(str(new.thread_id))
        run = _record(row)
        return Created(run=run, stopping=stopping, blank=bool(row["blank"]))

    async def _drop_pending(self, conn: AsyncConnection, run_id: uuid.UUID, action: CancelAction) -> bool:
        """A run that never started: ``interrupt`` ends it, ``rollback`` erases
        it, and its waiters hear. False when it was not waiting (a worker may have just taken it)."""
        dropped = (_ERASE_WAITING if action == "rollback" else _INTERRUPT_WAITING).format(which="run_id = %(run)s")
        told = await conn.execute(
            f"WITH dropped AS ({dropped}) SELECT pg_notify(%(done)s, run_id::text) FROM dropped",
            {"run": run_id, "done": DONE_CHANNEL},
        )
        return await told.fetchone() is not None

    async def _stop_running(self, conn: AsyncConnection, run_id: uuid.UUID, action: CancelAction) -> None:
        """Tell the worker of a running run to stop it, by ``action``."""
        await conn.execute(
            f"WITH stopped AS ({_MARK_RUNNING.format(which='run_id = %(run)s')}) "
            "SELECT pg_notify(%(cancel)s, run_id::text) FROM stopped",
            {"run": run_id, "action": action, "cancel": CANCEL_CHANNEL},
        )

    async def cancel(self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID, action: CancelAction) -> str | None:
        """Ask a run to stop. Returns the run's status before (None when the
        tenant has no such run); a pending run stops here, a running one when
        its worker hears of it."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM threads WHERE thread_id = %s AND tenant = %s FOR UPDATE", (thread_id, tenant)
            )
            row = await (
                await conn.execute(
                    """SELECT status FROM runs
                       WHERE run_id = %s AND thread_id = %s AND tenant = %s FOR UPDATE""",
                    (run_id, thread_id, tenant),
                )
            ).fetchone()
            if row is None:
                return None
            if row["status"] == "pending" and not await self._drop_pending(conn, run_id, action):
                row["status"] = "running"  # taken by a worker just now
            if row["status"] == "running":
                await self._stop_running(conn, run_id, action)
            return row["status"]

    # Reading -------------------------------------------------------------------

    async def get(self, tenant: str, thread_id: uuid.UUID | None, run_id: uuid.UUID) -> RunRecord | None:
        where, params = "run_id = %s AND tenant = %s", [run_id, tenant]
        if thread_id is not None:
            where += " AND thread_id = %s"
            params.append(thread_id)
        async with self.pool.connection() as conn:
            row = await (await conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE {where}", params)).fetchone()
        return _record(row) if row else None

    async def cancel_action(self, run_id: uuid.UUID) -> CancelAction | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT cancel_action FROM runs WHERE run_id = %s", (run_id,))).fetchone()
        return row["cancel_action"] if row else None

    async def status(self, run_id: uuid.UUID) -> RunStatus | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))).fetchone()
        return row["status"] if row else None

    async def list(
        self, tenant: str, thread_id: uuid.UUID, *, limit: int, offset: int, status: str | None
    ) -> list[RunRecord]:
        where, params = "thread_id = %s AND tenant = %s", [thread_id, tenant]
        if status:
            where += " AND status = %s"
            params.append(status)
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE {where} ORDER BY seq DESC LIMIT %s OFFSET %s",
                    (*params, limit, offset),
                )
            ).fetchall()
        return [_record(r) for r in rows]

    async def delete(self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID) -> str | None:
        """Delete a finished run (and its events). Returns the status it had, or None."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    """WITH target AS (SELECT run_id, status FROM runs
                                       WHERE run_id = %s AND thread_id = %s AND tenant = %s),
                            gone AS (DELETE FROM runs WHERE run_id IN
                                     (SELECT run_id FROM target WHERE status NOT IN ('pending', 'running')))
                       SELECT status FROM target""",
                    (run_id, thread_id, tenant),
                )
            ).fetchone()
        return row["status"] if row else None

    async def inflight(self, thread_id: uuid.UUID) -> int:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM runs WHERE thread_id = %s AND status IN ('pending', 'running')",
                    (thread_id,),
                )
            ).fetchone()
        return row["n"]

    # Workers -------------------------------------------------------------------

    async def claim(self, worker_id: uuid.UUID, limit: int) -> Claimed:
        """Take up to ``limit`` runs that may start: each the first waiting run
        of a thread that has none running, oldest first; and when the first
        such run not yet due will be."""
        try:
            async with self.pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        f"""WITH heads AS (
                                SELECT DISTINCT ON (thread_id) run_id, seq, status, available_at
                                FROM runs WHERE status IN ('pending', 'running')
                                ORDER BY thread_id, status = 'running' DESC, seq),
                            candidates AS (
                                SELECT run_id FROM heads
                                WHERE status = 'pending' AND available_at <= now()
                                ORDER BY seq LIMIT %(limit)s),
                            locked AS (
                                SELECT run_id FROM runs
                                WHERE run_id IN (SELECT run_id FROM candidates) AND status = 'pending'
                                FOR UPDATE SKIP LOCKED),
                            claimed AS (
                                UPDATE runs r SET status = 'running', worker_id = %(w)s,
                                                  attempt = attempt + 1, updated_at = now()
                                FROM locked WHERE r.run_id = locked.run_id
                                RETURNING {_R_COLUMNS}, r.seq),
                            soonest AS (
                                SELECT extract(epoch FROM min(available_at) - now())::float8 AS due_in_s
                                FROM heads WHERE status = 'pending' AND available_at > now())
                            SELECT soonest.due_in_s, claimed.*
                            FROM soonest LEFT JOIN claimed ON true ORDER BY claimed.seq""",
                        {"w": worker_id, "limit": limit},
                    )
                ).fetchall()
                # Committed apart: a transaction that locks a run and then its
                # thread could deadlock with one that does it the other way round.
                await conn.commit()
                runs = [_record(r) for r in rows if r["run_id"]]
                if runs:
                    await conn.execute(
                        "UPDATE threads SET status = 'busy', updated_at = now() WHERE thread_id = ANY(%s)",
                        ([run.thread_id for run in runs],),
                    )
        except UniqueViolation:
            # Another process claimed a run of the same thread at this instant.
            return Claimed([], None)
        return Claimed(runs, rows[0]["due_in_s"])

    async def finish(
        self,
        run: RunRecord,
        worker_id: uuid.UUID,
        status: RunStatus,
        thread_status: str,
        error: dict[str, Any] | None = None,
        *,
        with_statements: Sequence[Statement] = (),
    ) -> bool:
        """Record how an attempt ended; False when this worker no longer owns
        it. ``with_statements`` go in the same transaction, before the end (the
        run's last checkpoints), whether or not it still owns it."""
        ended = """UPDATE runs SET status = %(status)s, error = %(error)s, worker_id = NULL,
                                  updated_at = now(), ended_at = now()
                   WHERE run_id = %(run)s AND worker_id = %(worker)s AND attempt = %(attempt)s
                     AND status = 'running'
                   RETURNING run_id"""
        changes = {"status": status, "error": Jsonb(error) if error else None}
        return await self._end(run, worker_id, ended, changes, thread_status, with_statements)

    async def requeue(self, run: RunRecord, worker_id: uuid.UUID, *, delay_s: float) -> bool:
        """Hand an attempt back to the queue (the run goes on from its last checkpoint)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE runs SET status = 'pending', worker_id = NULL, updated_at = now(),
                                  available_at = now() + %s * interval '1 second'
                   WHERE run_id = %s AND worker_id = %s AND attempt = %s AND status = 'running'""",
                (delay_s, run.run_id, worker_id, run.attempt),
            )
            if cur.rowcount != 1:
                return False
            await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
            return True

    async def erase(self, run: RunRecord, worker_id: uuid.UUID) -> bool:
        """A rolled-back run: its row and events go (its checkpoints are already gone)."""
        ended = """DELETE FROM runs WHERE run_id = %(run)s AND worker_id = %(worker)s AND attempt = %(attempt)s
                   RETURNING run_id"""
        return await self._end(run, worker_id, ended, {}, "idle")

    async def _end(
        self,
        run: RunRecord,
        worker_id: uuid.UUID,
        ended: str,
        changes: dict[str, Any],
        thread_status: str,
        statements: Sequence[Statement] = (),
    ) -> bool:
        """End the attempt ``worker_id`` owns by ``ended`` (a statement returning
        the run_id when it applied, with ``changes`` among its parameters): then
        the thread's status, unless another run has it, and the
        news. The queue hears only when the thread has a run waiting, the one
        this end lets start; a freed slot is its own process's business."""
        async with self.pool.connection() as conn:
            async with pipelined_transaction(conn):
                # The thread first, as ``create`` does, so two transactions never wait on each other.
                await conn.execute(
                    f"SELECT {GENERIC_PLANS} FROM threads WHERE thread_id = %s FOR UPDATE", (run.thread_id,)
                )
                for statement, params in statements:
                    await conn.execute(statement, params)
                ended_cursor = await conn.execute(
                    f"""WITH ended AS ({ended}),
                                 thread AS (UPDATE threads SET status = %(thread_status)s, updated_at = now()
                                            WHERE thread_id = %(thread)s AND EXISTS (SELECT 1 FROM ended)
                                              AND NOT EXISTS (SELECT 1 FROM runs WHERE thread_id = %(thread)s
                                                              AND status = 'running' AND run_id <> %(run)s))
                            SELECT pg_notify(%(done)s, run_id::text),
                                   CASE WHEN EXISTS (SELECT 1 FROM runs
                                                     WHERE thread_id = %(thread)s AND status = 'pending')
                                        THEN pg_notify(%(queue)s, '') END
                            FROM ended""",
                    changes
                    | {
                        "run": run.run_id,
                        "worker": worker_id,
                        "attempt": run.attempt,
                        "thread": run.thread_id,
                        "thread_status": thread_status,
                        "done": DONE_CHANNEL,
                        "queue": QUEUE_CHANNEL,
                    },
                )
            # Read after the commit, which went with it: the thread's row is locked one round trip.
            return await ended_cursor.fetchone() is not None

    async def register_worker(self, conn: AsyncConnection, worker_id: uuid.UUID, host: str, pid: int) -> None:
        """On the worker's own long-lived connection: take its liveness lock, then appear."""
        await conn.execute("SELECT pg_advisory_lock(worker_lock_key(%s))", (worker_id,))
        await conn.execute("INSERT INTO workers (worker_id, host, pid) VALUES (%s, %s, %s)", (worker_id, host, pid))

    async def heartbeat(self, conn: AsyncConnection, worker_id: uuid.UUID) -> bool:
        """On the worker's own connection: a busy pool must not make a live worker look dead."""
        cur = await conn.execute("UPDATE workers SET heartbeat_at = now() WHERE worker_id = %s", (worker_id,))
        return cur.rowcount == 1

    async def unregister_worker(self, worker_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM workers WHERE worker_id = %s", (worker_id,))

    async def sweep(self, dead_after_s: float) -> list[uuid.UUID]:
        """Put the runs of workers that died (their lock is gone, or their
        heartbeat is older than ``dead_after_s``) back in the queue; the next
        attempt resumes from the run's last checkpoint. Returns their ids."""
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """WITH dead AS (
                            DELETE FROM workers w
                            WHERE w.heartbeat_at < now() - %(after)s * interval '1 second'
                               OR NOT EXISTS (
                                   SELECT 1 FROM pg_locks l
                                   WHERE l.locktype = 'advisory' AND l.granted
                                     AND l.database = (SELECT oid FROM pg_database
                                                       WHERE datname = current_database())
                                     AND ((l.classid::bigint << 32) | l.objid::bigint)
                                         = worker_lock_key(w.worker_id))
                            RETURNING worker_id),
                        orphans AS (
                            UPDATE runs r SET status = 'pending', worker_id = NULL, updated_at = now()
                            WHERE r.status = 'running' AND (r.worker_id IN (SELECT worker_id FROM dead)
                                  OR NOT EXISTS (SELECT 1 FROM workers w2 WHERE w2.worker_id = r.worker_id))
                            RETURNING r.run_id)
                        SELECT run_id FROM orphans""",
                    {"after": dead_after_s},
                )
            ).fetchall()
            if rows:
                await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
            return [r["run_id"] for r in rows]

    async def forget_events(self, retention_s: float) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """DELETE FROM run_events e
                   WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.run_id
                                     AND (r.ended_at IS NULL OR r.ended_at >= now() - %s * interval '1 second'))""",
                (retention_s,),
            )
            return cur.rowcount

    # Events --------------------------------------------------------------------

    async def append_events(self, rows: Sequence[tuple[uuid.UUID, int, int, str, bytes]]) -> None:
        """One statement, its own transaction: the batch is kept whole or not at
        all, in one wait on PostgreSQL (a COPY waits twice: its start, then its rows)."""
        params = as_columns(
            rows,
            run_ids=(0, UuidArray),
            attempts=(1, Int4Array),
            seqs=(2, Int4Array),
            events=(3, TextArray),
            data=(4, ByteaArray),
        )
        async with self.pool.connection() as conn:
            await conn.execute(_APPEND_EVENTS, params)

    async def events_after(self, run_id: uuid.UUID, attempt: int, seq: int) -> list[StoredEvent]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """SELECT attempt, seq, event, data FROM run_events
                       WHERE run_id = %s AND (attempt, seq) > (%s, %s) ORDER BY attempt, seq""",
                    (run_id, attempt, seq),
                )
            ).fetchall()
        return [StoredEvent(r["attempt"], r["seq"], r["event"], bytes(r["data"])) for r in rows]

    async def last_event(self, run_id: uuid.UUID) -> tuple[int, int]:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    """SELECT attempt, seq FROM run_events WHERE run_id = %s
                       ORDER BY attempt DESC, seq DESC LIMIT 1""",
                    (run_id,),
                )
            ).fetchone()
        return (row["attempt"], row["seq"]) if row else (0, 0)
