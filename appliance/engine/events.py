"""A run's stream: numbered events, kept in memory while the run executes here
and written to PostgreSQL in batches, so any process can replay or follow it.

An event's id is ``{attempt}-{seq}``: a retried run numbers its events anew
under its next attempt, so ids never repeat and always sort in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from appliance.engine.jsonable import to_json
from appliance.errors import Invalid
from appliance.store.runs import RunStore

log = logging.getLogger(__name__)

Position = tuple[int, int]  # (attempt, seq)
START: Position = (0, 0)


@dataclass(frozen=True, slots=True)
class Event:
    attempt: int
    seq: int
    event: str
    data: bytes  # JSON

    @property
    def id(self) -> str:
        return f"{self.attempt}-{self.seq}"

    @property
    def position(self) -> Position:
        return (self.attempt, self.seq)


def parse_event_id(value: str | None) -> Position | None:
    """A Last-Event-ID header: None (follow from now), "-1" (from the start) or an event id."""
    if value is None or value == "":
        return None
    if value.strip() == "-1":
        return START
    attempt, _, seq = value.strip().partition("-")
    if not (attempt.isdigit() and seq.isdigit()):
        raise Invalid(f"Last-Event-ID {value!r} is not an event id of this appliance (like '1-17'), nor -1")
    return (int(attempt), int(seq))


@dataclass
class LiveRun:
    """The events of one attempt of a run executing in this process."""

    run_id: uuid.UUID
    attempt: int
    events: list[Event] = field(default_factory=list)
    closed: bool = False
    final: bool = False  # the run is over (not only this attempt)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def follow(self, after: Position) -> AsyncIterator[Event]:
        index = 0 if after[0] < self.attempt else after[1]
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.closed:
                return
            await self._wake.wait()


class EventLog:
    """Every run's events in this process: published to local followers at
    once, and flushed to PostgreSQL by one writer every ``interval`` seconds
    (one COPY for all runs), so thousands of streams cost a few statements."""

    def __init__(self, store: RunStore, interval: float = 0.05) -> None:
        self.store = store
        self.interval = interval
        self.live: dict[uuid.UUID, LiveRun] = {}
        self._pending: list[tuple[uuid.UUID, int, int, str, bytes]] = []
        self._written: asyncio.Future[None] | None = None
        self._kick = asyncio.Event()
        self._changed: dict[uuid.UUID, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop(), name="run-event-writer")

    async def stop(self) -> None:
        await self.flush()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # Writing -------------------------------------------------------------------

    def open(self, run_id: uuid.UUID, attempt: int) -> LiveRun:
        live = LiveRun(run_id, attempt)
        self.live[run_id] = live
        self.touch(run_id)
        return live

    def publish(self, live: LiveRun, event: str, data: Any) -> Event:
        return self.publish_json(live, event, to_json(data))

    def publish_json(self, live: LiveRun, event: str, data: bytes) -> Event:
        """``data`` already encoded (stream chunks: see ``jsonable.stream_json``)."""
        item = Event(live.attempt, len(live.events) + 1, event, data)
        live.events.append(item)
        self._pending.append((live.run_id, item.attempt, item.seq, item.event, item.data))
        live._notify()
        return item

    def close(self, live: LiveRun, *, final: bool) -> None:
        live.closed, live.final = True, final
        live._notify()
        if self.live.get(live.run_id) is live:
            del self.live[live.run_id]
        self.touch(live.run_id)

    async def flush(self) -> None:
        """Return once every event published so far is in PostgreSQL."""
        if not self._pending and self._written is None:
            return
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        written = self._written
        self._kick.set()
        await asyncio.shield(written)

    async def _write_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self.interval)
            except TimeoutError:
                pass
            self._kick.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, []
            written, self._written = self._written, None
            try:
                await self.store.append_events(batch)
            except Exception as exc:  # keep streaming; replay will miss this batch
                log.error("could not keep %d stream events: %r", len(batch), exc)
            if written is not None and not written.done():
                written.set_result(None)

    # Reading -------------------------------------------------------------------

    def touch(self, run_id: uuid.UUID) -> None:
        """Wake followers of a run: it started here, ended, or changed elsewhere."""
        changed = self._changed.pop(run_id, None)
        if changed is not None:
            changed.set()

    async def _changes(self, run_id: uuid.UUID, timeout: float) -> None:
        changed = self._changed.setdefault(run_id, asyncio.Event())
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            pass

    async def _stored(self, run_id: uuid.UUID, after: Position) -> list[Event]:
        return [Event(e.attempt, e.seq, e.event, e.data) for e in await self.store.events_after(run_id, *after)]

    async def follow(self, run_id: uuid.UUID, after: Position | None, poll_s: float = 0.25) -> AsyncIterator[Event]:
        """The run's events after ``after`` (None: only those from now on), until it ends.

        A run executing in this process is followed in memory; one executing
        elsewhere (or still queued) is read from PostgreSQL as it grows."""
        if after is None:
            live = self.live.get(run_id)
            after = (live.attempt, len(live.events)) if live else await self.store.last_event(run_id)
        while True:
            live = self.live.get(run_id)
            if live is not None:
                if 1 < live.attempt and after[0] < live.attempt:  # earlier attempts, from the table
                    for item in await self._stored(run_id, after):
                        if item.attempt < live.attempt:
                            yield item
                            after = item.position
                async for item in live.follow(after):
                    yield item
                    after = item.position
                if live.final:
                    return
                continue
            # Taken before reading, so a change while we read is not missed.
            changed = self._changed.setdefault(run_id, asyncio.Event())
            for item in await self._stored(run_id, after):
                yield item
                after = item.position
            status = await self.store.status(run_id)
            if status not in ("pending", "running"):
                for item in await self._stored(run_id, after):
                    yield item
                return
            if run_id not in self.live:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll_s)
