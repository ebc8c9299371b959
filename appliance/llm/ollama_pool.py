"""Several Ollama servers serving one model, as one: an httpx transport.

Every ChatOllama the appliance builds sends its requests through one pool,
which gives each to the live server with the fewest requests in flight (on
a tie, the one that has had fewest: calls spread evenly). A server that
cannot be reached, or that breaks off an answer, is taken out, and a probe
asks it every ``probe_s`` whether it serves the model (``POST /api/show``)
until it does and is taken back.

A request that could not connect has sent nothing, so it goes to the next
live server at once. One whose answer broke off mid-way fails; the graph's
retry policy (``agent.graph.MODEL_RETRY``) asks again, and the pool gives
that attempt to a live server. With none live, the servers taken out are
tried in turn; only when none answers does a call fail (``ModelUnavailable``).

Being a transport, the pool leaves everything else to langchain-ollama and
the ``ollama`` client: tools, formats and streaming work as with one server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

# Errors after which a server is taken out: it is not there, or it went away mid-answer.
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing reached the server: another may take it


@dataclass
class OllamaServer:
    url: httpx.URL
    transport: httpx.AsyncBaseTransport
    up: bool = True
    in_flight: int = 0
    calls: int = 0  # requests given to it
    failures: int = 0  # times it was taken out
    error: str | None = None  # why it is out

    @property
    def name(self) -> str:
        return str(self.url).rstrip("/")


@dataclass(frozen=True)
class ServerState:
    """A server as /readyz and /metrics show it."""

    url: str
    up: bool
    in_flight: int
    calls: int
    failures: int
    error: str | None


class OllamaPool(httpx.AsyncBaseTransport):
    def __init__(self, urls: list[str], *, model: str, probe_s: float = 2.0, connect_timeout_s: float = 5.0) -> None:
        if not urls:
            raise ValueError("an Ollama pool needs at least one server")
        self.model, self.probe_s, self.connect_timeout_s = model, probe_s, connect_timeout_s
        self.servers = [OllamaServer(httpx.URL(u), httpx.AsyncHTTPTransport()) for u in urls]
        self._probes: dict[str, asyncio.Task[None]] = {}

    @property
    def base_url(self) -> str:
        """The URL clients are built with; the pool sends each request to a server of its choice."""
        return self.servers[0].name

    def states(self) -> list[ServerState]:
        return [ServerState(s.name, s.up, s.in_flight, s.calls, s.failures, s.error) for s in self.servers]

    def choose(self, tried: Collection[str] = ()) -> OllamaServer:
        """The live server with fewest calls in flight; with none live, one taken
        out is tried all the same (it may be back before its probe says so)."""
        untried = [s for s in self.servers if s.name not in tried]
        candidates = [s for s in untried if s.up] or untried
        if not candidates:
            down = "; ".join(f"{s.name} {s.error}" for s in self.servers)
            raise httpx.ConnectError(f"no Ollama server answers ({down})")
        return min(candidates, key=lambda s: (s.in_flight, s.calls))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tried: set[str] = set()
        while True:
            server = self.choose(tried)
            request.url = request.url.copy_with(scheme=server.url.scheme, host=server.url.host, port=server.url.port)
            server.in_flight += 1
            server.calls += 1
            try:
                response = await server.transport.handle_async_request(request)
            except NOT_SENT as exc:
                server.in_flight -= 1
                self.take_out(server, unreachable(exc))
                tried.add(server.name)
                continue
            except BaseException as exc:
                server.in_flight -= 1
                if isinstance(exc, UNREACHABLE):
                    self.take_out(server, unreachable(exc))
                raise
            if not server.up:
                self.take_back(server)  # tried with none live, and it answered
            response.stream = _Tracked(response.stream, server, self)
            return response

    def take_out(self, server: OllamaServer, reason: str) -> None:
        """``reason`` completes "the model server at URL ..." for the user."""
        if server.up:
            server.up, server.failures = False, server.failures + 1
            log.warning("Ollama server taken out  server=%s reason=%s", server.name, reason)
        server.error = reason
        if server.name not in self._probes or self._probes[server.name].done():
            self._probes[server.name] = asyncio.get_running_loop().create_task(self._probe_until_back(server))

    def take_back(self, server: OllamaServer) -> None:
        if not server.up:
            log.warning("Ollama server taken back  server=%s", server.name)
        server.up, server.error = True, None

    async def probe(self, server: OllamaServer) -> bool:
        """Whether the server serves the model now; it is taken out or back accordingly."""
        reason = await self._asked(server)
        if reason is None:
            self.take_back(server)
        else:
            self.take_out(server, reason)
        return reason is None

    async def _asked(self, server: OllamaServer) -> str | None:
        """None when the server serves the model; else why not."""
        try:
            async with httpx.AsyncClient(timeout=self.connect_timeout_s * 2, trust_env=False) as client:
                response = await client.post(f"{server.name}/api/show", json={"model": self.model})
        except (httpx.HTTPError, OSError) as exc:
            return unreachable(exc)
        if response.status_code == 404:
            return f"does not have the model {self.model!r}"
        if response.status_code != 200:
            return f"answered {response.status_code} to /api/show: {response.text[:200]}"
        return None

    async def _probe_until_back(self, server: OllamaServer) -> None:
        while not server.up:
            await asyncio.sleep(self.probe_s)
            if (reason := await self._asked(server)) is None:
                self.take_back(server)
            else:
                server.error = reason

    async def aclose(self) -> None:
        for task in self._probes.values():
            task.cancel()
        for server in self.servers:
            await server.transport.aclose()


def unreachable(exc: BaseException) -> str:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"cannot be reached; is it running? ({detail})"


class _Tracked(httpx.AsyncByteStream):
    """A server's answer: its call is in flight until the answer is read or closed,
    and an answer that breaks off takes the server out."""

    def __init__(self, stream: httpx.AsyncByteStream, server: OllamaServer, pool: OllamaPool) -> None:
        self._stream, self._server, self._pool = stream, server, pool
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:  # type: ignore[union-attr]
                yield chunk
        except UNREACHABLE as exc:
            self._pool.take_out(self._server, unreachable(exc))
            raise

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._server.in_flight -= 1
        await self._stream.aclose()  # type: ignore[union-attr]
