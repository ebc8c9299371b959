"""(a) The cost of the HTTP layer: a full turn through POST /threads/{id}/runs/wait
against graph.ainvoke with the same checkpointer, both with an instant model;
and against graph.ainvoke checkpointing each step before the next, as a run does
(durability="sync"), which tells the engine's choice apart from the rest.

Each side's CPU a turn too (this process's: the server, and for the HTTP turn
also its client, httpx, in the same process): what the graph alone costs,
against what the whole turn does.

    python -m bench.http_turn [--turns 300]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from bench.common import bench_settings, instant_model, percentile, summary, timed
from tests.support.app import serve_app


async def main(turns: int) -> None:
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            runtime, client = app.runtime, app.client
            body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hello there"}]}}
            said = {"messages": [("user", "hello there")]}
            cpu = {}

            # Raw: the compiled graph and its checkpointer, no HTTP, no services.
            raw_thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
            raw, cpu["raw"] = await timed(turns, lambda: runtime.graph.ainvoke(said, raw_thread))

            # The same, checkpointing each step before the next as a run does (durability="sync"):
            # what the engine's choice costs, apart from the HTTP layer and the run's bookkeeping.
            synced_thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
            synced, cpu["synced"] = await timed(
                turns, lambda: runtime.graph.ainvoke(said, synced_thread, durability="sync")
            )

            tid = (await client.post("/threads", json={})).json()["thread_id"]

            async def http_turn() -> None:
                response = await client.post(f"/threads/{tid}/runs/wait", json=body)
                assert response.status_code == 200, response.text

            http, cpu["http"] = await timed(turns, http_turn)

            # Throughput with 8 conversations at once (one client each, one thread each).
            threads = [(await client.post("/threads", json={})).json()["thread_id"] for _ in range(8)]

            async def converse(thread_id: str, n: int) -> None:
                for _ in range(n):
                    assert (await client.post(f"/threads/{thread_id}/runs/wait", json=body)).status_code == 200

            started = time.perf_counter()
            await asyncio.gather(*(converse(t, turns // 8) for t in threads))
            concurrent_rate = 8 * (turns // 8) / (time.perf_counter() - started)

    print(summary("raw graph.ainvoke", raw))
    print(summary('raw, durability="sync"', synced))
    print(summary("HTTP runs/wait (sequential)", http))
    print(f"{'HTTP runs/wait, 8 threads at once':<34} rate={concurrent_rate:7.1f} turns/s")
    print(
        f'CPU a turn: raw {cpu["raw"] * 1000:.2f} ms, raw with durability="sync" {cpu["synced"] * 1000:.2f} ms, '
        f"HTTP {cpu['http'] * 1000:.2f} ms ({cpu['http'] / cpu['synced']:.2f}x the synced raw turn)"
    )
    print(
        f"ratio HTTP/raw: p50 {percentile(http, 50) / percentile(raw, 50):.2f}x  "
        f"p99 {percentile(http, 99) / percentile(raw, 99):.2f}x  (target <= 1.3x)"
    )
    print(
        f'ratio HTTP/raw with durability="sync" (as a run): p50 {percentile(http, 50) / percentile(synced, 50):.2f}x  '
        f"p99 {percentile(http, 99) / percentile(synced, 99):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    asyncio.run(main(parser.parse_args().turns))
