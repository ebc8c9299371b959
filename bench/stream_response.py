"""What the SSE response itself costs a stream: the appliance's EventStream
(the stream sent by the request's task, one task listening for the client to
leave) against Litestar's Stream (the stream run under an anyio task group).

One uvicorn server in this process serves both, each a route streaming
--chunks events through ``with_heartbeat`` as a run's stream does (each chunk
ready on its own, as tokens are); a bare client in the same process reads
each stream to its end. The two routes alternate stream by stream, so the
host's drift falls on both alike. This process's CPU a stream is the server's
and the client's; the client's is the same for both, so the difference is
the response's.

    python -m bench.stream_response [--streams 2000] [--chunks 12]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import uvicorn
from litestar import Litestar, get
from litestar.response import Stream

from appliance.api.sse import EventStream, with_heartbeat
from tests.support.services import free_port

HEADERS = {"Cache-Control": "no-store"}


def make_app(chunks: int) -> Litestar:
    async def events() -> AsyncIterator[bytes]:
        async def produced() -> AsyncIterator[bytes]:
            for i in range(chunks):
                await asyncio.sleep(0)  # each chunk ready on its own, as a token is
                yield b"event: messages\ndata: %d\n\n" % i

        async for chunk in with_heartbeat(produced(), heartbeat_s=15):
            yield chunk

    @get("/event-stream")
    async def event_stream() -> EventStream:
        return EventStream(events(), headers=HEADERS)

    @get("/litestar-stream")
    async def litestar_stream() -> Stream:
        return Stream(events(), media_type="text/event-stream", headers=HEADERS)

    return Litestar([event_stream, litestar_stream], debug=False)


async def read_stream(port: int, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    received = await reader.read()
    writer.close()
    assert received.startswith(b"HTTP/1.1 200") and received.count(b"event: messages") >= 1, received[:200]


async def main(streams: int, chunks: int) -> None:
    port = free_port()
    config = uvicorn.Config(
        make_app(chunks), host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    paths = {"EventStream": "/event-stream", "Litestar's Stream": "/litestar-stream"}
    cpu = dict.fromkeys(paths, 0.0)
    try:
        for _ in range(50):  # warm up
            for path in paths.values():
                await read_stream(port, path)
        for i in range(streams):
            names = list(paths) if i % 2 == 0 else list(paths)[::-1]
            for name in names:
                before = time.process_time()
                await read_stream(port, paths[name])
                cpu[name] += time.process_time() - before
    finally:
        server.should_exit = True
        await serving
    ours, theirs = (cpu[name] / streams * 1e6 for name in paths)
    print(f"{streams} streams of {chunks} chunks each way, alternating; CPU a stream (server and client):")
    print(f"  EventStream {ours:.0f} us, Litestar's Stream {theirs:.0f} us: {ours / theirs:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.chunks))
