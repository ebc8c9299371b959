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
import json
import time

from bench.common import WARM_UP_TURNS, bench_settings, instant_model, percentile, postgres_cpu_seconds
from bench.http_turn import BareClient
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
    body = json.dumps({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}}).encode()
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            runtime = app.runtime
            chosen = variants(runtime)

            def use(name: str) -> None:
                runtime.worker.execute, runtime.checkpointer.writes_with_next_checkpoint = chosen[name]

            threads = [
                (await app.client.post("/threads", json={})).json()["thread_id"]
                for _ in range(rounds * block * len(chosen) + WARM_UP_TURNS)
            ]
            bare = await BareClient.open(app.url, app.admin_key)
            took: dict[str, list[float]] = {name: [] for name in chosen}
            cpu, postgres = dict.fromkeys(chosen, 0.0), dict.fromkeys(chosen, 0.0)
            try:
                for thread_id in threads[:WARM_UP_TURNS]:
                    await bare.post(f"/threads/{thread_id}/runs/wait", body)
                fresh = iter(threads[WARM_UP_TURNS:])
                for _ in range(rounds):
                    for name in chosen:
                        use(name)
                        cpu_from, postgres_from = time.process_time(), postgres_cpu_seconds() or 0.0
                        for _ in range(block):
                            started = time.perf_counter()
                            status, answer = await bare.post(f"/threads/{next(fresh)}/runs/wait", body)
                            took[name].append(time.perf_counter() - started)
                            assert status == 200, answer
                        cpu[name] += time.process_time() - cpu_from
                        postgres[name] += (postgres_cpu_seconds() or 0.0) - postgres_from
            finally:
                use("now")
                bare.close()

    now = took["now"]
    for name, samples in took.items():
        n, p50, p99 = len(samples), percentile(samples, 50), percentile(samples, 99)
        print(
            f"{name:<7} n={n}  p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
            f"CPU a turn {cpu[name] / n * 1000:5.2f} ms, PostgreSQL's {postgres[name] / n * 1000:5.2f} ms"
        )
    before = took["before"]
    print(
        f"now/before: p50 {percentile(now, 50) / percentile(before, 50):.2f}x, "
        f"p99 {percentile(now, 99) / percentile(before, 99):.2f}x, CPU {cpu['now'] / cpu['before']:.2f}x, "
        f"PostgreSQL's CPU {postgres['now'] / postgres['before']:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.block))
