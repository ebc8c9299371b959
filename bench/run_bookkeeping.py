"""What a turn's bookkeeping on the run queue costs this process: queueing a
run and recording its end (``RunStore.create`` and ``finish``), as they are
sent now, against the same with what 2026-12-07's changes took away:

- BEGIN and COMMIT sent as statements of their own in each pipelined
  transaction (now its Sync commits it: ``store.database.pipelined_transaction``);
- the queueing statement longer than the 4 KB psycopg keeps read, so that its
  placeholders are found again at each execution (now compacted below it);
- both, as the code was before.

The variants alternate in one process, in blocks of --block turns, so the
machine's drift falls on all of them alike; printed: each one's CPU and
p50 a turn, and their ratios to the code now.

    python -m bench.run_bookkeeping [--rounds 20] [--block 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from psycopg import AsyncConnection

import appliance.store.runs as runs_module
from appliance.services.limits import defaults_from
from appliance.store.database import open_pool
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadStore
from bench.common import bench_settings, percentile
from tests.support.queue import make_tables, new_run

# What a run of the agent carries, about its size.
KWARGS = {"input": {"messages": [{"role": "user", "content": "hello there"}]}, "context": {"instructions": "x" * 800}}


@contextlib.asynccontextmanager
async def with_begin_and_commit(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """The pipelined transaction as it was: BEGIN and COMMIT as statements."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        yield conn
        await conn.execute("COMMIT")


NOW = (runs_module.pipelined_transaction, runs_module._QUEUE_RUN)
# The same statement, made longer than psycopg's 4 KB by a comment at its end.
LONG_STATEMENT = runs_module._QUEUE_RUN + "\n-- " + "-" * max(0, 4100 - len(runs_module._QUEUE_RUN))
VARIANTS = {
    "now": NOW,
    "BEGIN and COMMIT": (with_begin_and_commit, NOW[1]),
    "statement over 4 KB": (NOW[0], LONG_STATEMENT),
    "both (before)": (with_begin_and_commit, LONG_STATEMENT),
}


async def main(rounds: int, block: int) -> None:
    with bench_settings() as settings:  # the limits off, as in every bench
        limits = defaults_from(settings)
        await make_tables(settings.database_url)
        pool = await open_pool(settings.database_url, min_size=1, max_size=1)
        try:
            runs, threads, worker = RunStore(pool), ThreadStore(pool), uuid.uuid4()

            async def turn() -> tuple[float, float]:
                thread = await threads.create("default", uuid.uuid4(), {}, if_exists="raise")
                new = new_run(thread.thread_id, kwargs=KWARGS, start_on=worker)
                wall, cpu = time.perf_counter(), time.process_time()
                created = await runs.create(new, limits)
                await runs.finish(created.run, worker, "success", "idle")
                return time.perf_counter() - wall, time.process_time() - cpu

            seen: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
            for round_ in range(rounds + 1):  # the first round warms up
                for name, (transaction, statement) in VARIANTS.items():
                    runs_module.pipelined_transaction, runs_module._QUEUE_RUN = transaction, statement
                    timed = [await turn() for _ in range(block)]
                    if round_:
                        seen[name] += timed
            runs_module.pipelined_transaction, runs_module._QUEUE_RUN = NOW
        finally:
            await pool.close()

    def cpu_ms(name: str) -> float:
        return sum(cpu for _, cpu in seen[name]) / len(seen[name]) * 1000

    def p50_ms(name: str) -> float:
        return percentile([wall for wall, _ in seen[name]], 50) * 1000

    print(f"a run queued and its end recorded, {rounds} rounds of {block} each, alternating:")
    for name in VARIANTS:
        print(
            f"  {name:<20} CPU {cpu_ms(name):6.3f} ms  p50 {p50_ms(name):6.3f} ms   "
            f"now against it: CPU {cpu_ms('now') / cpu_ms(name):.2f}x, p50 {p50_ms('now') / p50_ms(name):.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.block))
