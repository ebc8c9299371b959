"""A worker: takes runs from the PostgreSQL queue and executes them.

Every server process runs one; ``appliance worker`` runs one alone, on any host
that reaches the database. A worker holds one connection of its own: it
LISTENs there (new runs, cancellations, ends) and holds its liveness lock
there, so when the process dies PostgreSQL frees the lock and the sweeper of
any other worker hands its runs back to the queue at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg import AsyncConnection

from appliance.engine.events import EventLog
from appliance.store.runs import (
    CANCEL_CHANNEL,
    DONE_CHANNEL,
    INFLIGHT,
    QUEUE_CHANNEL,
    Created,
    RunRecord,
    RunStatus,
    RunStore,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended. The process that ran it also hands its waiters the
    final state (``values``, and the ``interrupts`` it paused on), so a
    ``wait`` in that process need not read the state back; elsewhere None."""

    status: RunStatus | None
    values: dict[str, Any] | None = None
    interrupts: list[Any] = field(default_factory=list)


# Ends kept for waiters that look just after (a wait registered a moment too late).
RECENT_ENDS = 64
# How soon a worker that lost the database tries again, doubling up to the most.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 2.0
# A run due at a time is looked for this much after it, so the look does not come a hair early.
DUE_SLACK_S = 0.01


class Execute(Protocol):
    """What runs a run the worker started. ``blank``: its thread had no
    checkpoint when it was queued, and nothing can have written one since
    (the run started there and then), so the run need not look for one."""

    def __call__(self, run: RunRecord, worker: Worker, *, blank: bool = False) -> Awaitable[None]: ...


class Worker:
    def __init__(
        self,
        store: RunStore,
        events: EventLog,
        database_url: str,
        execute: Execute,
        *,
        slots: int,
        heartbeat_s: float,
        dead_after_s: float,
        event_retention_s: float,
    ) -> None:
        self.store = store
        self.events = events
        self.database_url = database_url
        self.execute = execute
        self.slots = slots
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.event_retention_s = event_retention_s
        self.worker_id = uuid.uuid4()
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Cancellations heard for runs not (yet) started here; checked at start.
        self.cancelled: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._began: set[uuid.UUID] = set()
        self._stopping = False
        self._ended: dict[uuid.UUID, list[asyncio.Future[RunEnd | None]]] = {}
        # Recent ends heard in this process (None: it ended elsewhere, read how).
        self._recent: OrderedDict[uuid.UUID, RunEnd | None] = OrderedDict()
        self._held = 0  # slots held for runs this process is creating (``hold_slot``)
        self._starved = False  # the last look at the queue found more than the free slots
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: AsyncConnection | None = None  # listens, and holds the liveness lock
        self._beat: AsyncConnection | None = None  # the heartbeat's own
        self._online = asyncio.Event()  # both connections are up and the lock is held

    async def start(self) -> None:
        await self._connect()
        await self.store.sweep(self.dead_after_s)
        self._tasks = [
            asyncio.create_task(self._listen(), name="worker-listen"),
            asyncio.create_task(self._claim_loop(), name="worker-claim"),
            asyncio.create_task(self._keep_alive(), name="worker-heartbeat"),
            asyncio.create_task(self._upkeep(), name="worker-upkeep"),
        ]
        log.info("worker started", extra={"worker_id": str(self.worker_id), "slots": self.slots})

    async def _connect(self) -> None:
        """The worker's own connections: LISTEN and the liveness lock on one, the heartbeat on the other."""
        self._conn = await AsyncConnection.connect(self.database_url, autocommit=True)
        self._beat = await AsyncConnection.connect(self.database_url, autocommit=True)
        await self.store.register_worker(self._conn, self.worker_id, socket.gethostname(), os.getpid())
        for channel in (QUEUE_CHANNEL, CANCEL_CHANNEL, DONE_CHANNEL):
            await self._conn.execute(f"LISTEN {channel}")
        self._online.set()

    async def _close_connections(self) -> None:
        for conn in (self._conn, self._beat):
            if conn is not None:
                await conn.close()
        self._conn = self._beat = None

    async def _reconnect(self) -> None:
        """After the database went away: under a new identity (the old one's runs
        are handed back by the sweep), as soon as the database answers again."""
        self._online.clear()
        await self._close_connections()
        delay = RECONNECT_MIN_S
        while True:
            await asyncio.sleep(delay)
            self.worker_id = uuid.uuid4()
            try:
                await self._connect()
                await self.store.sweep(self.dead_after_s)
            except Exception as exc:
                await self._close_connections()
                log.debug("database still unavailable: %r", exc)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            log.info("worker reconnected", extra={"worker_id": str(self.worker_id)})
            self._wake.set()
            return

    async def stop(self) -> None:
        """Stop taking runs; runs still executing go back to the queue."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        try:
            await self.store.unregister_worker(self.worker_id)
        finally:
            await self._close_connections()
        # Runs cut off here are pending again; another worker may take them now.
        await self.store.sweep(self.dead_after_s)

    # Waiting for a run to end (any process) ------------------------------------

    async def wait_ended(self, run_id: uuid.UUID, poll_s: float = 1.0, *, in_flight: bool = False) -> RunEnd:
        """Return when the run is no longer pending or running: how it ended
        (status None: it is gone), with its final state when it ended in this process.
        ``in_flight``: the caller knows it was (it just created it), so its status is not read first."""
        look = not in_flight
        while True:
            if run_id in self._recent:
                if (end := self._recent[run_id]) is not None:
                    return end
                look = True  # it ended elsewhere
            if look:
                status = await self.store.status(run_id)
                if status not in INFLIGHT:
                    return self._recent.get(run_id) or RunEnd(status)
            look = True
            ended: asyncio.Future[RunEnd | None] = asyncio.get_running_loop().create_future()
            self._ended.setdefault(run_id, []).append(ended)
            try:
                if (end := await asyncio.wait_for(ended, poll_s)) is not None:
                    return end
            except TimeoutError:
                pass
            finally:
                waiters = self._ended.get(run_id)
                if waiters and ended in waiters:
                    waiters.remove(ended)
                    if not waiters:
                        del self._ended[run_id]

    # Loops ---------------------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                assert self._conn is not None
                async for note in self._conn.notifies():
                    self._heard(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Without this connection the lock is gone and our runs may be handed
                # to another worker: stop them here so none runs twice.
                log.error("worker lost its database connection: %r; its runs go back to the queue", exc)
                for task in list(self.running.values()):
                    task.cancel()
                await self._reconnect()

    def _heard(self, channel: str, payload: str) -> None:
        if channel == QUEUE_CHANNEL:
            self._wake.set()
        elif channel == CANCEL_CHANNEL:
            self._cancel_local(uuid.UUID(payload))
        elif channel == DONE_CHANNEL and (run_id := uuid.UUID(payload)) not in self.running:
            # A run of this process said so itself, with its final state: not replaced by this word.
            if self._recent.get(run_id) is None:
                self.ended_here(run_id)

    def ended_here(self, run_id: uuid.UUID, end: RunEnd | None = None) -> None:
        """The run's end is committed: its waiters in this process look now (the
        run's own process calls this at once, with how it ended; the others
        when PostgreSQL tells them, and read it back)."""
        if end is not None or run_id not in self._recent:
            self._recent[run_id] = end
            self._recent.move_to_end(run_id)
            if len(self._recent) > RECENT_ENDS:
                self._recent.popitem(last=False)
        for ended in self._ended.pop(run_id, []):
            if not ended.done():
                ended.set_result(end)
        self.events.touch(run_id)

    # Starting a run this process creates ---------------------------------------

    def hold_slot(self) -> uuid.UUID | None:
        """A slot for a run this process is about to create, so it can start
        here without a trip through the queue: this worker's id, or None when it
        has no slot free (or is not online). Give it back with ``adopt``."""
        if self._stopping or not self._online.is_set() or self.slots - len(self.running) - self._held <= 0:
            return None
        self._held += 1
        return self.worker_id

    def adopt(self, created: Created | None) -> None:
        """Give back a held slot; when the run ``created`` was made running on
        this worker, start it in it. (A run claimed under an identity this worker
        has since lost is not started: the sweep hands it back to the queue.)"""
        self._held -= 1
        run = created.run if created else None
        if run is None or run.status != "running":
            if self._starved:  # the slot held may be what a queued run waits for
                self._wake.set()
            return
        if run.worker_id == self.worker_id and self._online.is_set() and not self._stopping:
            self._start(run, blank=created.blank)
        else:
            self._wake.set()

    def _cancel_local(self, run_id: uuid.UUID) -> None:
        # Recorded as well: a task cancelled before its first step never runs
        # its own cleanup, so _start runs it again to stop the run properly.
        if len(self.cancelled) > 10_000:
            self.cancelled.clear()
        self.cancelled.add(run_id)
        task = self.running.get(run_id)
        if task is not None:
            task.cancel()

    async def _claim_loop(self) -> None:
        while True:
            # Cleared before looking, so a run queued while we look wakes us again.
            self._wake.clear()
            # Claimed only while the liveness lock is held, or a sweep could hand the run to another at once.
            await self._online.wait()
            free = self.slots - len(self.running) - self._held
            self._starved = free <= 0
            claimed, due_s = [], None
            if free > 0:
                try:
                    taken = await self.store.claim(self.worker_id, min(free, 500))
                    claimed, due_s = taken.runs, taken.next_due_s
                except Exception as exc:
                    log.error("could not take runs from the queue: %r", exc)
                    await asyncio.sleep(1)
            for run in claimed:
                self._start(run)
            if claimed and len(claimed) == free:
                self._starved = True
                continue  # there may be more waiting
            # A run waiting for its time (after_seconds, a retry's backoff) is
            # looked for when it is due; nothing else tells the queue then.
            wait_s = self.heartbeat_s if due_s is None else min(self.heartbeat_s, max(due_s, 0.0) + DUE_SLACK_S)
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    def _start(self, run: RunRecord, *, blank: bool = False) -> None:
        task = asyncio.create_task(self._run(run, blank), name=f"run-{run.run_id}")
        self.running[run.run_id] = task

        def never_began(done: asyncio.Task[None]) -> None:
            # Not when the database went away: the claim is void then, and the sweep hands the run back.
            if done.cancelled() and run.run_id not in self._began and not self._stopping and self._online.is_set():
                self._start(run)  # it sees the cancellation at once and ends the run as asked

        task.add_done_callback(never_began)

    async def _run(self, run: RunRecord, blank: bool) -> None:
        self._began.add(run.run_id)
        try:
            await self.execute(run, self, blank=blank)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("run %s failed outside the agent", run.run_id)
        finally:
            self.running.pop(run.run_id, None)
            self.cancelled.discard(run.run_id)
            self._began.discard(run.run_id)
            if self._starved:  # runs may be waiting for this slot
                self._wake.set()
            self.ended_here(run.run_id)  # waiters the run left without word look for themselves

    async def _keep_alive(self) -> None:
        """The heartbeat alone, on its own connection: the upkeep's statements wait
        in line for the pool, and a busy pool must not make a live worker look dead."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if not self._online.is_set():
                continue  # _listen is reconnecting
            try:
                if not await self.store.heartbeat(self._beat, self.worker_id):
                    log.error("this worker was declared dead; its runs go back to the queue")
                    for task in list(self.running.values()):
                        task.cancel()
                    await self.store.register_worker(self._conn, self.worker_id, socket.gethostname(), os.getpid())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("worker heartbeat failed: %r", exc)

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if not self._online.is_set():
                continue
            try:
                if await self.store.sweep(self.dead_after_s):
                    self._wake.set()
                await self.store.forget_events(self.event_retention_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("worker upkeep failed: %r", exc)
