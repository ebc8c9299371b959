"""Turns take the CPU a few at a time, in the order they came.

asyncio shares the CPU among every task that is ready, round-robin. When more
turns arrive than the cores can serve at once, each of them then advances a
little at a time and all finish together, each as late as the last; and the
model's wait, which could overlap other turns' work, comes after every turn's
start. Here a process lets at most ``width`` turns do their work at once; the
rest wait first come, first served. A turn steps out of the lane while it
waits for the model or a tool (``aside``), and comes back at the end of the
line: the turns that came before it reach the model first, so their waits
overlap the work that follows. A run a request has just made goes ahead of
the line, so the request's work goes on without waiting twice.

It is a trade, so it is off unless ``turn_lane_width`` is set: with 1,000
streams at once the median turn waited 0.64x as long, the last ones as long,
and the servers spent 1.10x the CPU a turn (``bench.stream_load --compare-lane``).

Nothing is refused and nothing is held for long: a turn in the lane waits only
for PostgreSQL and its own CPU. The lane orders work; it guards no data, so a
turn that leaves it early (a client gone, an error) costs at worst one more
turn at work.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class Lane:
    """At most ``width`` turns at work; the others wait in one line, runs just made first."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.busy = 0
        self._ahead: deque[asyncio.Future[None]] = deque()
        self._line: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._ahead) + len(self._line)

    def counts(self) -> dict[str, int]:
        return {"at_work": self.busy, "waiting": self.waiting}

    @asynccontextmanager
    async def turn(self, *, ahead: bool = False) -> AsyncIterator[Ticket]:
        """Wait for a place, and hold it until the block ends or the ticket is
        given back. ``ahead``: a run, which goes on with the work of the request
        that made it (or waited in the run queue), served first."""
        with self.ticket() as ticket:
            await ticket.take(ahead=ahead)
            yield ticket

    @contextmanager
    def ticket(self) -> Iterator[Ticket]:
        """A ticket, current for the block and taken when the turn's work
        begins (``Ticket.take``); given back, if held, when the block ends."""
        ticket = Ticket(self)
        token = _current.set(ticket)
        try:
            yield ticket
        finally:
            _current.reset(token)
            ticket.give_back()

    async def _enter(self, *, ahead: bool) -> None:
        if self.busy < self.width or not self.width:  # width 0: no limit
            self.busy += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._ahead if ahead else self._line
        line.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._leave()  # the place was handed over just as we left
            else:
                line.remove(turn)
            raise

    def _leave(self) -> None:
        for line in (self._ahead, self._line):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)  # the place passes straight to the next in line
                    return
        self.busy -= 1


class Ticket:
    """One turn's place in the lane, held or given back."""

    __slots__ = ("lane", "held", "_away", "_taking")

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.held = False
        self._away = 0  # the turn's branches waiting aside at once
        self._taking = False

    async def take(self, *, ahead: bool = False) -> None:
        if self.held or self._taking:
            return  # another branch of the same turn holds it, or is coming back for it
        self._taking = True
        try:
            await self.lane._enter(ahead=ahead)
            self.held = True
        finally:
            self._taking = False

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.lane._leave()


_current: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("lane_ticket", default=None)


@asynccontextmanager
async def aside() -> AsyncIterator[None]:
    """Out of the lane while the block waits (for the model, a tool); back in,
    at the end of the line, when it returns. A block that fails does not come
    back: what follows is the turn's end, and it need not wait behind others for that."""
    ticket = _current.get()
    if ticket is None:
        yield
        return
    ticket._away += 1
    ticket.give_back()
    try:
        yield
    finally:
        ticket._away -= 1
    if ticket._away == 0:
        await ticket.take()


def hand_over() -> None:
    """The current turn's work passes to another task (a run it created), which
    takes its own place: give this one back now rather than at the request's end."""
    if (ticket := _current.get()) is not None:
        ticket.give_back()
