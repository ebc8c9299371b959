"""(a) The cost of the HTTP layer: a full turn through POST /threads/{id}/runs/wait
against graph.ainvoke with the same checkpointer, both with an instant model;
and against graph.ainvoke checkpointing each step before the next, as a run does
(durability="sync"), which tells the engine's choice apart from the rest.

Measured twice, as issue 17 asks: on a new conversation (each turn on a
thread of its own, made beforehand) and along one conversation of --turns
turns, whose last LATE turns are the turns "at turn 300".

The sides are taken side by side: each round is one turn of every side (a
new conversation each, or the next turn of each side's own conversation), in
an order that turns round each round, so the host's drift falls on all alike.

Each side's CPU a turn too (this process's: the server, and for the HTTP turn
also its client, httpx, in the same process): what the graph alone costs,
against what the whole turn does.

The HTTP turn is also taken by a bare client (one keep-alive connection,
written and read by hand): httpx itself costs this process 0.5-1 ms a
request, which is the client's, not the appliance's.

    python -m bench.http_turn [--turns 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.common import (
    WARM_UP_TURNS,
    bench_settings,
    instant_model,
    percentile,
    postgres_cpu_seconds,
    summary,
)
from tests.support.app import serve_app

# The turns of the long conversation its late figures are taken from (the last of them).
LATE = 40


class BareClient:
    """POSTs of JSON on one keep-alive HTTP/1.1 connection, written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        self.reader, self.writer, self.key = reader, writer, key.encode()

    @classmethod
    async def open(cls, url: str, key: str) -> BareClient:
        where = urlsplit(url)
        return cls(*await asyncio.open_connection(where.hostname, where.port), key)

    def close(self) -> None:
        self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: appliance\r\nx-api-key: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.key, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        length = next(int(v) for k, v in fields.items() if k.lower() == b"content-length")
        return int(head[9:12]), await self.reader.readexactly(length)


@dataclass
class Alternated:
    """Turns of variants taken in alternating blocks: each one's times, and its
    CPU (this process's, and PostgreSQL's on this host), in seconds."""

    took: dict[str, list[float]]
    cpu: dict[str, float]
    postgres: dict[str, float]

    def cpu_a_turn(self, name: str) -> float:
        return self.cpu[name] / len(self.took[name])

    def postgres_a_turn(self, name: str) -> float:
        return self.postgres[name] / len(self.took[name])


async def alternating_new_thread_turns(
    app, use: Callable[[str], None], names: Sequence[str], *, rounds: int, block: int
) -> Alternated:
    """``runs/wait`` turns through a bare client, each on a new thread, the
    variants ``names`` alternating in blocks of ``block`` turns (``use(name)``
    sets one up; the first is set again after), so the machine's drift falls on all alike."""
    body = json.dumps({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}}).encode()
    threads = [
        (await app.client.post("/threads", json={})).json()["thread_id"]
        for _ in range(rounds * block * len(names) + WARM_UP_TURNS)
    ]
    done = Alternated({name: [] for name in names}, dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0))
    bare = await BareClient.open(app.url, app.admin_key)
    try:
        for thread_id in threads[:WARM_UP_TURNS]:
            await bare.post(f"/threads/{thread_id}/runs/wait", body)
        fresh = iter(threads[WARM_UP_TURNS:])
        for _ in range(rounds):
            for name in names:
                use(name)
                cpu_from, postgres_from = time.process_time(), postgres_cpu_seconds() or 0.0
                for _ in range(block):
                    started = time.perf_counter()
                    status, answer = await bare.post(f"/threads/{next(fresh)}/runs/wait", body)
                    done.took[name].append(time.perf_counter() - started)
                    assert status == 200, answer
                done.cpu[name] += time.process_time() - cpu_from
                done.postgres[name] += (postgres_cpu_seconds() or 0.0) - postgres_from
    finally:
        use(names[0])
        bare.close()
    return done


async def interleaved(
    sides: dict[str, Callable[[], Awaitable[object]]], turns: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``turns`` rounds, after WARM_UP_TURNS to warm up, each one turn of every
    side in an order that turns round by one each round: each side's seconds a
    turn, and its CPU a turn (this process's). The sides' turns are taken
    side by side, so the host's drift (its speed moved 1.5x within minutes
    on 2026-12-07) falls on all of them alike."""
    names = list(sides)
    took: dict[str, list[float]] = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    for round_ in range(WARM_UP_TURNS + turns):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_from, started = time.process_time(), time.perf_counter()
            await sides[name]()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_from
            if round_ >= WARM_UP_TURNS:
                took[name].append(seconds)
                spent[name] += cpu
    return took, {name: spent[name] / turns for name in names}


def ratios(name: str, http: list[float], raw: list[float], synced: list[float]) -> str:
    return (
        f"{name}: HTTP/raw p50 {percentile(http, 50) / percentile(raw, 50):.2f}x, "
        f"p99 {percentile(http, 99) / percentile(raw, 99):.2f}x (target <= 1.3x); "
        f'HTTP/raw with durability="sync" (as a run) p50 {percentile(http, 50) / percentile(synced, 50):.2f}x'
    )


async def main(turns: int) -> None:
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            runtime, client = app.runtime, app.client
            body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hello there"}]}}
            said = {"messages": [("user", "hello there")]}

            def new_thread() -> dict:
                return {"configurable": {"thread_id": str(uuid.uuid4())}}

            async def http_turn(thread_id: str) -> None:
                response = await client.post(f"/threads/{thread_id}/runs/wait", json=body)
                assert response.status_code == 200, response.text

            encoded = json.dumps(body).encode()
            bare = await BareClient.open(app.url, app.admin_key)

            async def bare_turn(thread_id: str) -> None:
                status, answer = await bare.post(f"/threads/{thread_id}/runs/wait", encoded)
                assert status == 200, answer

            async def made_threads() -> Iterator[str]:
                made = [await client.post("/threads", json={}) for _ in range(turns + WARM_UP_TURNS)]
                return iter([response.json()["thread_id"] for response in made])

            try:
                # A new conversation each turn.
                for_http, for_bare = await made_threads(), await made_threads()
                fresh, fresh_cpu = await interleaved(
                    {
                        "raw": lambda: runtime.graph.ainvoke(said, new_thread()),
                        "synced": lambda: runtime.graph.ainvoke(said, new_thread(), durability="sync"),
                        "http": lambda: http_turn(next(for_http)),
                        "bare": lambda: bare_turn(next(for_bare)),
                    },
                    turns,
                )
                # One conversation of `turns` turns each. Raw: the compiled graph and its checkpointer,
                # no HTTP, no services; synced: the same, checkpointing each step before the next as a
                # run does (durability="sync"): what the engine's choice costs, apart from the HTTP
                # layer and the run's bookkeeping.
                raw_thread, synced_thread = new_thread(), new_thread()
                http_thread, bare_thread = [
                    (await client.post("/threads", json={})).json()["thread_id"] for _ in range(2)
                ]
                long, cpu = await interleaved(
                    {
                        "raw": lambda: runtime.graph.ainvoke(said, raw_thread),
                        "synced": lambda: runtime.graph.ainvoke(said, synced_thread, durability="sync"),
                        "http": lambda: http_turn(http_thread),
                        "bare": lambda: bare_turn(bare_thread),
                    },
                    turns,
                )
            finally:
                bare.close()

            # Throughput with 8 conversations at once (one client each, one thread each).
            threads = [(await client.post("/threads", json={})).json()["thread_id"] for _ in range(8)]

            async def converse(thread_id: str, n: int) -> None:
                for _ in range(n):
                    await http_turn(thread_id)

            started = time.perf_counter()
            await asyncio.gather(*(converse(t, turns // 8) for t in threads))
            concurrent_rate = 8 * (turns // 8) / (time.perf_counter() - started)

    late_from, late_to = WARM_UP_TURNS + turns - LATE + 1, WARM_UP_TURNS + turns
    print(summary("raw graph.ainvoke, new thread", fresh["raw"]))
    print(summary('  raw, durability="sync"', fresh["synced"]))
    print(summary("  HTTP runs/wait", fresh["http"]))
    print(summary("  HTTP runs/wait, a bare client", fresh["bare"]))
    print(summary(f"raw graph.ainvoke, turns 21-{late_to}", long["raw"]))
    print(summary('  raw, durability="sync"', long["synced"]))
    print(summary("  HTTP runs/wait", long["http"]))
    print(summary("  HTTP runs/wait, a bare client", long["bare"]))
    print(f"{'HTTP runs/wait, 8 threads at once':<34} rate={concurrent_rate:7.1f} turns/s")
    for name, spent in (("new conversation", fresh_cpu), ("one conversation", cpu)):
        print(
            f'CPU a turn, {name}: raw {spent["raw"] * 1000:.2f} ms, raw with durability="sync" '
            f"{spent['synced'] * 1000:.2f} ms, HTTP {spent['http'] * 1000:.2f} ms "
            f"({spent['http'] / spent['synced']:.2f}x the synced raw turn), "
            f"with a bare client {spent['bare'] * 1000:.2f} ms"
        )
    late = {side: times[-LATE:] for side, times in long.items()}
    for client_name, side in (("httpx", "http"), ("a bare client", "bare")):
        print(f"through {client_name}:")
        print(ratios("  new conversation", fresh[side], fresh["raw"], fresh["synced"]))
        print(ratios(f"  turns 21-{late_to}", long[side], long["raw"], long["synced"]))
        print(ratios(f"  at turns {late_from}-{late_to}", late[side], late["raw"], late["synced"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    asyncio.run(main(parser.parse_args().turns))
