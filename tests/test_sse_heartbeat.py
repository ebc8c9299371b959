"""A stream's heartbeat (api/sse.py, with_heartbeat): quiet seconds get a comment
line, every chunk arrives once and in order (chunks ready together as one), a
client that leaves early is told to the caller and the source is closed, and
waiting for a chunk makes no task and arms no timer of its own."""

from __future__ import annotations

import asyncio

import pytest

from appliance.api.sse import HEARTBEAT, MOST_AHEAD, with_heartbeat


class Source:
    """Chunks with pauses between them; remembers whether it was closed."""

    def __init__(self, plan: list[bytes | float], fail: Exception | None = None) -> None:
        self.plan, self.fail, self.closed = plan, fail, False

    async def chunks(self):
        try:
            for step in self.plan:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    yield step
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True


async def test_quiet_seconds_get_a_heartbeat_and_every_chunk_arrives_in_order():
    source, left = Source([b"a", 0.25, b"b", b"c", 0.05, b"d"]), []
    got = [c async for c in with_heartbeat(source.chunks(), heartbeat_s=0.1, on_early_close=lambda: left.append(1))]
    assert b"".join(c for c in got if c != HEARTBEAT) == b"abcd"
    assert got[:2] == [b"a", HEARTBEAT] and 1 <= got.count(HEARTBEAT) <= 3
    assert source.closed and left == []


async def test_a_client_that_leaves_early_is_told_and_the_source_is_closed():
    source, left = Source([b"a", b"b", 5.0, b"never"]), []

    async def leaving():
        left.append("left")

    stream = with_heartbeat(source.chunks(), heartbeat_s=1, on_early_close=leaving)
    assert await anext(stream) == b"ab"  # ready together: one write
    await stream.aclose()
    assert left == ["left"] and source.closed


async def test_an_error_of_the_source_reaches_the_client():
    source = Source([b"a"], fail=RuntimeError("the events could not be read"))
    stream = with_heartbeat(source.chunks(), heartbeat_s=1)
    assert await anext(stream) == b"a"
    with pytest.raises(RuntimeError, match="could not be read"):
        await anext(stream)
    assert source.closed


async def test_waiting_for_chunks_makes_no_task_for_each():
    loop, made = asyncio.get_running_loop(), []
    factory = loop.get_task_factory()

    def counting(loop, coro, **kwargs):
        made.append(coro)
        return factory(loop, coro, **kwargs) if factory else asyncio.Task(coro, loop=loop, **kwargs)

    source = Source([step for n in range(100) for step in (0.0005, f"{n}".encode())])
    loop.set_task_factory(counting)
    try:
        got = [c async for c in with_heartbeat(source.chunks(), heartbeat_s=5)]
    finally:
        loop.set_task_factory(factory)
    assert len(got) == 100
    assert len(made) <= 2, f"{len(made)} tasks for 100 chunks"


async def test_chunks_ready_together_leave_as_one_and_the_reader_stays_at_most_so_far_ahead():
    chunks = [f"{n};".encode() for n in range(3 * MOST_AHEAD)]
    stream = with_heartbeat(Source(list(chunks)).chunks(), heartbeat_s=5)
    assert await anext(stream) == b"".join(chunks[:MOST_AHEAD])
    rest = [c async for c in stream]
    assert b"".join(rest) == b"".join(chunks[MOST_AHEAD:]) and len(rest) == 2


async def test_waiting_for_chunks_arms_no_timer_for_each():
    loop, armed = asyncio.get_running_loop(), []
    call_at = loop.call_at

    def counting(when, callback, *args, **kwargs):
        armed.append(callback)
        return call_at(when, callback, *args, **kwargs)

    async def source():
        for n in range(100):
            await asyncio.sleep(0)  # no timer: the next chunk is read in a later turn of the loop
            yield f"{n};".encode()

    loop.call_at = counting  # asyncio.timeout and call_later arm their timers through it
    try:
        got = [c async for c in with_heartbeat(source(), heartbeat_s=5)]
    finally:
        del loop.call_at
    assert b"".join(got) == b"".join(f"{n};".encode() for n in range(100))
    assert len(got) > 10, "the chunks were read apart, as a model's tokens are"
    assert len(armed) <= 2, f"{len(armed)} timers for {len(got)} writes"
