"""A bounded number of model calls at once; the rest wait first come, first served.

Ollama (and llama.cpp in-process) serve few generations in parallel, so calls
beyond ``model_concurrency`` queue here rather than pile up at the model. A
waiting call reports its place in the line through the run's reporter (a
context variable the run engine sets), so a stream can tell its client.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

# Called with (position, waiting) while a call waits: position 1 is next.
QueueReporter = Callable[[int, int], None]
queue_reporter: contextvars.ContextVar[QueueReporter | None] = contextvars.ContextVar("queue_reporter", default=None)


class ModelGate:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy = 0
        self._waiting: deque[tuple[asyncio.Future[None], QueueReporter | None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.busy < self.slots and not self._waiting:
            self.busy += 1
        else:
            await self._wait_turn()
        try:
            yield
        finally:
            self._release()

    async def _wait_turn(self) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (turn, queue_reporter.get())
        self._waiting.append(entry)
        self._report(len(self._waiting) - 1)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over just as we left
            else:
                self._waiting.remove(entry)
                self._report(0)
            raise

    def _release(self) -> None:
        while self._waiting:
            turn, _ = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes straight to the next in line
                self._report(0)
                return
        self.busy -= 1

    def _report(self, start: int) -> None:
        """Tell waiters from index ``start`` on where they stand now."""
        total = len(self._waiting)
        for index in range(start, total):
            reporter = self._waiting[index][1]
            if reporter is not None:
                reporter(index + 1, total)
