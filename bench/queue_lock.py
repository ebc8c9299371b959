"""Many runs of one tenant queued at once: what the lock of the limits costs.

--concurrency callers each queue runs on threads of their own, one after the
other, as a burst of streams does (``RunStore.create``, the caller told of
the run, so its commit waits for the disk), in blocks of --block runs that
alternate in one process between:

- limits off: no lock, as nothing is counted (``store.limits.in_flight_lock``);
- before: the tenant's lock taken whatever the limits (the code before
  2026-12-07's change), the limits off;
- limits on: the tenant's lock, with limits too high to refuse any run.

Printed: each one's runs queued a second, p50 and p99 a run, and PostgreSQL's
CPU a run (its processes on this host); and the ratios to "limits off".

    python -m bench.queue_lock [--rounds 6] [--block 400] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import msgspec

import appliance.store.runs as runs_module
from appliance.services.limits import defaults_from
from appliance.store.database import open_pool
from appliance.store.runs import RunStore
from appliance.store.threads import ThreadStore
from bench.common import bench_settings, percentile, postgres_cpu_seconds
from tests.support.queue import make_tables, new_run

# As every queueing locked before: the tenant's lock, whatever its limits.
LOCKED_BEFORE = "SELECT pg_advisory_xact_lock(hashtextextended(%(tenant_lock)s, 5151))"
NOW = runs_module._LOCK_RUNS
KWARGS = {"input": {"messages": [{"role": "user", "content": "hello there"}]}}


class Block(msgspec.Struct):
    runs: int = 0
    wall_s: float = 0.0
    db_cpu_s: float = 0.0
    each: list[float] = msgspec.field(default_factory=list)


async def main(rounds: int, block: int, concurrency: int) -> None:
    with bench_settings() as settings:  # the limits off, as in every bench
        off = defaults_from(settings)
        on = msgspec.structs.replace(off, key_runs_in_flight=1_000_000, tenant_runs_in_flight=1_000_000)
        variants = {"limits off": (NOW, off), "before": (LOCKED_BEFORE, off), "limits on": (NOW, on)}
        await make_tables(settings.database_url)
        pool = await open_pool(settings.database_url, min_size=concurrency, max_size=concurrency)
        try:
            runs, threads = RunStore(pool), ThreadStore(pool)
            key = uuid.uuid4()

            async def queue_block(limits) -> Block:
                made = [await threads.create("default", uuid.uuid4(), {}, if_exists="raise") for _ in range(block)]
                ids = iter(made)
                seen = Block()

                async def caller() -> None:
                    for thread in ids:
                        started = time.perf_counter()
                        await runs.create(new_run(thread.thread_id, kwargs=KWARGS, key_id=key), limits)
                        seen.each.append(time.perf_counter() - started)

                db_before, started = postgres_cpu_seconds(), time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(concurrency)))
                seen.wall_s, seen.runs = time.perf_counter() - started, block
                db_after = postgres_cpu_seconds()
                seen.db_cpu_s = db_after - db_before if db_before is not None and db_after is not None else 0.0
                async with pool.connection() as conn:  # what is in flight stays as small as each block made it
                    await conn.execute("DELETE FROM runs")
                return seen

            blocks: dict[str, list[Block]] = {name: [] for name in variants}
            for round_ in range(rounds + 1):  # the first round warms up
                order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
                for name in order:
                    statement, limits = variants[name]
                    runs_module._LOCK_RUNS = statement
                    done = await queue_block(limits)
                    if round_:
                        blocks[name].append(done)
            runs_module._LOCK_RUNS = NOW
        finally:
            await pool.close()

    def rate(name: str) -> float:
        return sum(b.runs for b in blocks[name]) / sum(b.wall_s for b in blocks[name])

    def p(name: str, q: float) -> float:
        return percentile([t for b in blocks[name] for t in b.each], q) * 1000

    def db_ms(name: str) -> float:
        return sum(b.db_cpu_s for b in blocks[name]) / sum(b.runs for b in blocks[name]) * 1000

    print(f"{concurrency} callers queueing runs of one tenant, {rounds} rounds of {block} runs each, alternating:")
    for name in variants:
        print(
            f"  {name:<11} {rate(name):7.0f} runs/s   p50 {p(name, 50):6.2f} ms   p99 {p(name, 99):7.2f} ms   "
            f"PostgreSQL {db_ms(name):5.2f} ms a run   limits off against it: "
            f"{rate('limits off') / rate(name):.2f}x the rate, {p('limits off', 50) / p(name, 50):.2f}x the p50, "
            f"{p('limits off', 99) / p(name, 99):.2f}x the p99"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.block, args.concurrency))
