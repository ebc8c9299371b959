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
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send

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


# How many chunks the reader may hold that the client has not taken yet.
MOST_AHEAD = 256


class _Relay:
    """Chunks read by one task, handed to the response in batches.

    Per chunk the reader only appends it (and wakes the response if it waits),
    and what is ready when the response next looks leaves as one write: a
    stream costs a wake-up per batch, not a hand-over through a queue, a timer
    and two task switches per chunk (the tokens of a long answer were most of
    a turn's CPU). One timer a stream keeps the heartbeat, re-armed at each
    heartbeat interval rather than at each chunk."""

    def __init__(self, heartbeat_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.heartbeat_s = heartbeat_s
        self.ready: list[bytes] = []
        self.ended: _Ended | None = None
        self.last_sent = self.loop.time()
        self._response: asyncio.Future[bool] | None = None  # the response waiting: True wakes it for a heartbeat
        self._room: asyncio.Future[None] | None = None  # the reader waiting for the client to take some
        self._timer = self.loop.call_later(heartbeat_s, self._beat)

    async def read(self, chunks: AsyncIterator[bytes]) -> None:
        ended = _Ended(None)
        try:
            async for chunk in chunks:
                self.ready.append(chunk)
                self._wake(False)
                if len(self.ready) >= MOST_AHEAD:
                    self._room = self.loop.create_future()
                    await self._room
        except Exception as exc:  # raised on the client's side, where the stream is
            ended = _Ended(exc)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
        self.ended = ended
        self._wake(False)

    async def batches(self) -> AsyncIterator[bytes]:
        while True:
            if self.ready:
                batch = self.ready[0] if len(self.ready) == 1 else b"".join(self.ready)
                self.ready = []
                if self._room is not None and not self._room.done():
                    self._room.set_result(None)
                self.last_sent = self.loop.time()
                yield batch
            elif self.ended is not None:
                if self.ended.error is not None:
                    raise self.ended.error
                return
            else:
                self._response = self.loop.create_future()
                try:
                    beat = await self._response
                finally:
                    self._response = None
                if beat:
                    self.last_sent = self.loop.time()
                    yield HEARTBEAT

    def _wake(self, beat: bool) -> None:
        if self._response is not None and not self._response.done():
            self._response.set_result(beat)

    def _beat(self) -> None:
        now = self.loop.time()
        due = self.last_sent + self.heartbeat_s
        if now >= due:  # quiet that long: a heartbeat, unless the response is still sending
            self._wake(True)
            due = now + self.heartbeat_s
        self._timer = self.loop.call_at(due, self._beat)

    def close(self) -> None:
        self._timer.cancel()


async def with_heartbeat(
    chunks: AsyncIterator[bytes],
    *,
    heartbeat_s: float,
    on_early_close: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """``chunks``, with a heartbeat comment after ``heartbeat_s`` quiet seconds;
    chunks ready together are joined into one. If the client leaves before the
    chunks end, ``on_early_close`` runs.

    One task reads the chunks, at most ``MOST_AHEAD`` ahead of the client
    (``_Relay``); a heartbeat leaves the read in progress untouched."""
    relay = _Relay(heartbeat_s)
    reader = asyncio.ensure_future(relay.read(chunks))
    finished = False
    try:
        async for batch in relay.batches():
            yield batch
        finished = True
    finally:
        relay.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        if not finished and on_early_close is not None:
            await asyncio.shield(on_early_close())


class _EventStreamResponse(ASGIStreamingResponse):
    """A stream sent by the request's own task, while one task waits for the
    client to leave and then cancels it. Litestar's streaming response runs
    the stream under an anyio task group and its cancel scopes, which cost a
    stream more than its tokens did; this does the same with one task."""

    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        left = sent = False

        async def listen() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            if not sent:  # the client left before the stream ended: stop sending it
                left = True
                streaming.cancel()

        listener = asyncio.ensure_future(listen())
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            if not left:  # cancelled from outside (the server stopping): not ours to swallow
                raise
            streaming.uncancel()
        finally:
            sent = True
            listener.cancel()


class EventStream(Stream):
    """A ``text/event-stream`` response (``_EventStreamResponse``)."""

    def __init__(self, content: AsyncIterator[bytes], *, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        # Litestar's own response (its headers, cookies and status merged as it
        # merges them), sent as ours: the class adds no field, only send_body.
        response = super().to_asgi_response(*args, **kwargs)
        response.__class__ = _EventStreamResponse
        return response


def run_location(thread_id: object, run_id: object) -> str:
    return f"/threads/{thread_id}/runs/{run_id}"


def event_stream(body: AsyncIterator[bytes], thread_id: object, run_id: object) -> EventStream:
    """The response of a run's stream, with the headers the SDK reads: where
    the run is (Content-Location) and where to reconnect (Location)."""
    run_url = run_location(thread_id, run_id)
    return EventStream(
        body,
        headers={
            "Content-Location": run_url,
            "Location": f"{run_url}/stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
