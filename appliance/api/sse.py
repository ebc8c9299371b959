"""Server-Sent Events, framed as LangGraph's Agent Server sends them: every
run event carries an ``id:`` a client can resume from (Last-Event-ID), and a
comment line keeps quiet connections open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from litestar.response import Stream

from appliance.engine.events import Event

_encode = msgspec.json.Encoder().encode

HEARTBEAT = b": heartbeat\n\n"


def frame(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


def event_frame(item: Event) -> bytes:
    return b"id: " + item.id.encode() + b"\nevent: " + item.event.encode() + b"\ndata: " + item.data + b"\n\n"


async def sse(
    events: AsyncIterator[Event],
    *,
    heartbeat_s: float,
    first: bytes = b"",
    on_early_close: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """A run's events as Agent Server frames, ``first`` before them."""

    async def frames() -> AsyncIterator[bytes]:
        if first:
            yield first
        try:
            async for item in events:
                yield event_frame(item)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async for chunk in with_heartbeat(frames(), heartbeat_s=heartbeat_s, on_early_close=on_early_close):
        yield chunk


async def with_heartbeat(
    chunks: AsyncIterator[bytes],
    *,
    heartbeat_s: float,
    on_early_close: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """``chunks``, with a heartbeat comment after ``heartbeat_s`` quiet seconds.
    If the client leaves before the chunks end, ``on_early_close`` runs."""
    finished = False
    upcoming: asyncio.Future[bytes] | None = None
    try:
        while True:
            if upcoming is None:
                upcoming = asyncio.ensure_future(anext(chunks))
            done, _ = await asyncio.wait({upcoming}, timeout=heartbeat_s)
            if not done:
                yield HEARTBEAT
                continue
            try:
                item = upcoming.result()
            except StopAsyncIteration:
                finished = True
                return
            upcoming = None
            yield item
    finally:
        if upcoming is not None and not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(BaseException):
                await upcoming
        with contextlib.suppress(BaseException):
            await chunks.aclose()  # type: ignore[attr-defined]
        if not finished and on_early_close is not None:
            await asyncio.shield(on_early_close())


def run_location(thread_id: object, run_id: object) -> str:
    return f"/threads/{thread_id}/runs/{run_id}"


def event_stream(body: AsyncIterator[bytes], thread_id: object, run_id: object) -> Stream:
    """The response of a run's stream, with the headers the SDK reads: where
    the run is (Content-Location) and where to reconnect (Location)."""
    run_url = run_location(thread_id, run_id)
    return Stream(
        body,
        media_type="text/event-stream",
        headers={
            "Content-Location": run_url,
            "Location": f"{run_url}/stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
