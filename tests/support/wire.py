"""A loopback TCP relay in front of a server that counts round trips: each
time the client sends after the server has last spoken, the client is
waiting on the server again. It reads no protocol, so it counts what any
client library really does on the wire."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class _Turn:
    """Who spoke last on one connection (its first bytes are a round trip too)."""

    server_spoke = True


class RoundTripCounter:
    """``async with RoundTripCounter(url) as wire``: ``wire.url`` reaches the
    server of ``url`` through the relay; ``wire.round_trips`` counts since the
    last ``wire.reset()``, and ``wire.sent`` the bytes the client sent since."""

    def __init__(self, url: str) -> None:
        self._target = urlsplit(url)
        self.round_trips = 0
        self.sent = bytearray()
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        netloc = self._target.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        return self._target._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()

    def reset(self) -> None:
        self.round_trips = 0
        self.sent.clear()

    async def __aenter__(self) -> RoundTripCounter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for relay in self._relays:
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self._target.hostname, self._target.port or 5432)
        turn = _Turn()
        relays = [
            asyncio.create_task(self._pipe(client_r, server_w, turn, from_client=True)),
            asyncio.create_task(self._pipe(server_r, client_w, turn, from_client=False)),
        ]
        self._relays.update(relays)
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for relay in relays:
                relay.cancel()
            client_w.close()
            server_w.close()
            self._relays.difference_update(relays)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, turn: _Turn, *, from_client: bool
    ) -> None:
        while data := await reader.read(65536):
            if from_client:
                self.sent += data
                if turn.server_spoke:
                    self.round_trips += 1
            turn.server_spoke = not from_client
            writer.write(data)
            await writer.drain()
