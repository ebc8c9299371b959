"""What a new conversation's `runs/wait` turn waits on PostgreSQL for: now
(the run, started in the process that queued it on a thread with no
checkpoint, does not look for one; its last checkpoint commits in the
transaction that records its end) against before 2026-12-07's night (the
first read made, the last checkpoint a commit of its own).

HTTP turns through a bare client, each on a new thread, instant model; the
two variants alternate in one process in blocks of --block turns, so the
machine's drift falls on both alike. Printed: p50 and p99, this process's
CPU a turn (the server and its bare client) and PostgreSQL's (its processes
on this host, from /proc).

    python -m bench.turn_waits [--rounds 10] [--block 50]
"""

from __future__ import annotations

import argparse
import asyncio

from bench.common import bench_settings, instant_model, percentile
from bench.http_turn import alternating_new_thread_turns
from tests.support.app import serve_app


def variants(runtime) -> dict[str, tuple]:
    """Each variant's executor for the worker and checkpoint writer for the run (before: each told nothing)."""
    worker, saver = runtime.worker, runtime.checkpointer
    execute, with_checkpoints = worker.execute, saver.writes_with_next_checkpoint

    def execute_looking(run, on, *, blank=False):
        return execute(run, on)

    def each_commit_apart(*, until_end=None):
        return with_checkpoints()

    return {"now": (execute, with_checkpoints), "before": (execute_looking, each_commit_apart)}


async def main(rounds: int, block: int) -> None:
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            runtime = app.runtime
            chosen = variants(runtime)

            def use(name: str) -> None:
                runtime.worker.execute, runtime.checkpointer.writes_with_next_checkpoint = chosen[name]

            turns = await alternating_new_thread_turns(app, use, list(chosen), rounds=rounds, block=block)

    for name, samples in turns.took.items():
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"{name:<7} n={len(samples)}  p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"CPU a turn {turns.cpu_a_turn(name) * 1000:5.2f} ms, "
            f"PostgreSQL's {turns.postgres_a_turn(name) * 1000:5.2f} ms"
        )
    now, before = turns.took["now"], turns.took["before"]
    print(
        f"now/before: p50 {percentile(now, 50) / percentile(before, 50):.2f}x, "
        f"p99 {percentile(now, 99) / percentile(before, 99):.2f}x, "
        f"CPU {turns.cpu_a_turn('now') / turns.cpu_a_turn('before'):.2f}x, "
        f"PostgreSQL's CPU {turns.postgres_a_turn('now') / turns.postgres_a_turn('before'):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.block))
