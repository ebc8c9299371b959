"""(c) AsyncPostgresSaver takes one asyncio lock around every call even over a
connection pool (langgraph issue 7259), so concurrent conversations queue
behind each other. PooledPostgresSaver skips the lock when it has a pool.
This runs the same concurrent turns (instant model) with each saver.

    python -m bench.checkpointer_lock [--conversations 16] [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from appliance.agent.context import built_in_context
from appliance.agent.graph import build_graph, memory_policy
from appliance.llm.catalog import ModelCatalog
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import open_pool
from appliance.store.migrations import migrate
from bench.common import bench_settings, instant_model, percentile


async def run(saver_class, pool, settings, conversations: int, turns: int) -> tuple[float, list[float]]:
    saver = saver_class(pool)
    await saver.setup()
    model = instant_model()
    graph = build_graph(ModelCatalog(model), memory_policy(settings, model), saver, defaults=built_in_context(settings))
    latencies: list[float] = []

    async def converse() -> None:
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        for n in range(turns):
            started = time.perf_counter()
            await graph.ainvoke({"messages": [("user", f"turn {n}")]}, config)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(converse() for _ in range(2)))  # warm up
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(converse() for _ in range(conversations)))
    return time.perf_counter() - started, latencies


async def main(conversations: int, turns: int) -> None:
    with bench_settings() as settings:
        pool = await open_pool(str(settings.database_url), min_size=conversations, max_size=conversations + 4)
        await migrate(pool)
        results = {}
        for saver_class in (AsyncPostgresSaver, PooledPostgresSaver):
            elapsed, latencies = await run(saver_class, pool, settings, conversations, turns)
            results[saver_class.__name__] = elapsed
            print(
                f"{saver_class.__name__:<22} {conversations} conversations x {turns} turns: "
                f"{conversations * turns / elapsed:7.1f} turns/s  p50 {percentile(latencies, 50) * 1000:6.2f} ms  "
                f"p99 {percentile(latencies, 99) * 1000:6.2f} ms"
            )
        await pool.close()
    print(
        f"throughput PooledPostgresSaver / AsyncPostgresSaver: "
        f"{results['AsyncPostgresSaver'] / results['PooledPostgresSaver']:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.conversations, args.turns))
