"""What a `runs/wait` turn waits on PostgreSQL's disk for: now only its end
(its queueing and its checkpoints commit without waiting, and the end's
commit takes them along), against every commit waiting, as before
2026-12-07's evening.

HTTP turns through a bare client, each on a new thread, instant model; the
two variants alternate in one process in blocks of --block turns, so the
machine's drift falls on both alike. Also printed: what one commit's wait
for the disk costs on this machine (an INSERT committed waiting and not), of
which a turn now waits for one where it waited for three.

    python -m bench.commit_waits [--rounds 10] [--block 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import appliance.store.checkpointer as checkpointer_module
import appliance.store.runs as runs_module
from appliance.store.database import UNFLUSHED_COMMIT
from bench.common import bench_settings, instant_model, percentile
from bench.http_turn import alternating_new_thread_turns
from tests.support.app import serve_app

# Each variant: the run's queueing statement, and what a run's checkpoint statement selects to commit.
VARIANTS = {
    "now": (runs_module._QUEUE_RUN, UNFLUSHED_COMMIT),
    "every commit waits (before)": (runs_module._QUEUE_RUN.replace(UNFLUSHED_COMMIT, "NULL"), "NULL"),
}


def use(variant: str) -> None:
    runs_module._QUEUE_RUN, checkpointer_module.UNFLUSHED_COMMIT = VARIANTS[variant]


async def one_commit(pool, synchronous: bool, n: int = 300) -> float:
    """p50 of an INSERT committed on its own, waiting for the disk or not."""
    unflushed = "" if synchronous else f" FROM (SELECT {UNFLUSHED_COMMIT}) AS s"
    took = []
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commits (n int)")
        for _ in range(n):
            started = time.perf_counter()
            await conn.execute(f"INSERT INTO bench_commits SELECT 1{unflushed}")
            took.append(time.perf_counter() - started)
        await conn.execute("DROP TABLE bench_commits")
    return percentile(took, 50)


async def main(rounds: int, block: int) -> None:
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            turns = await alternating_new_thread_turns(app, use, list(VARIANTS), rounds=rounds, block=block)
            waiting, not_waiting = await one_commit(app.runtime.pool, True), await one_commit(app.runtime.pool, False)

    now = percentile(turns.took["now"], 50)
    for name, samples in turns.took.items():
        p50 = percentile(samples, 50)
        print(
            f"{name:<30} n={len(samples)}  p50 {p50 * 1000:6.2f} ms  p99 {percentile(samples, 99) * 1000:6.2f} ms  "
            f"CPU {turns.cpu_a_turn(name) * 1000:5.2f} ms a turn  (now/this p50 {now / p50:.2f}x)"
        )
    print(
        f"one INSERT committed: waiting for the disk p50 {waiting * 1000:.3f} ms, "
        f"not waiting {not_waiting * 1000:.3f} ms: the wait {(waiting - not_waiting) * 1000:.3f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.block))
