"""Server-Sent Events, framed as LangGraph's Agent Server sends them: every
run event carries an ``id:`` a client can resume from (Last-Event-ID), and a
comment line keeps quiet connections open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

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


class _Ended(NamedTuple):
    error: BaseException | None


async def with_heartbeat(
    chunks: AsyncIterator[bytes],
    *,
    heartbeat_s: float,
    on_early_close: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """``chunks``, with a heartbeat comment after ``heartbeat_s`` quiet seconds.
    If the client leaves before the chunks end, ``on_early_close`` runs.

    One task reads the chunks, at most one ahead of the client, and hands each
    over through a queue of one: waiting for the next chunk (a turn streams
    dozens) makes no task of its own, and a heartbeat's timeout leaves the
    read in progress untouched."""
    handed: asyncio.Queue[bytes | _Ended] = asyncio.Queue(maxsize=1)

    async def read() -> None:
        ended = _Ended(None)
        try:
            async for chunk in chunks:
                await handed.put(chunk)
        except Exception as exc:  # raised on the client's side, where the stream is
            ended = _Ended(exc)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
        await handed.put(ended)

    reader = asyncio.ensure_future(read())
    finished = False
    try:
        while True:
            try:
                async with asyncio.timeout(heartbeat_s):
                    item = await handed.get()
            except TimeoutError:
                yield HEARTBEAT
                continue
            if isinstance(item, _Ended):
                if item.error is not None:
                    raise item.error
                finished = True
                return
            yield item
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
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
