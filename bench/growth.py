"""(g) Does a turn cost more as the conversation grows? Turns through
POST /threads/{id}/runs/wait with an instant model and the default memory
budget: time per turn, and bytes the thread's rows gained per turn
(checkpoints, their blobs and writes, the message archive and the runs'
stream events), at turns 10-30 against turns 980-1,000 (issue 17's target);
and at turns 180-200, once the memory policy has filled the window and begun
to fold, against 980-1,000: whether a turn still costs more as the
conversation goes on, once the state has its full size.

Threads are brought to turns 10, 180 and 980 (``--threads`` of each), then
take their measured turns in turn (early, settled, late, early, ...): the
windows are measured over the same seconds, so the machine's drift from
minute to minute (this one's moves a 20-turn median by a third) does not land
on one of them, and each median is of 20 turns on every thread of its window.

    python -m bench.growth [--turns 1000] [--threads 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import bench_settings, instant_model, keep_statistics
from tests.support.app import serve_app
from tests.support.turns import user

# Every row the conversation itself writes, wherever it lives.
THREAD_BYTES = """
    SELECT (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c WHERE c.thread_id = %(t)s)
         + (SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b WHERE b.thread_id = %(t)s)
         + (SELECT coalesce(sum(pg_column_size(w.*)), 0) FROM checkpoint_writes w WHERE w.thread_id = %(t)s)
         + (SELECT coalesce(sum(pg_column_size(a.*)), 0) FROM message_archive a WHERE a.thread_id = %(t)s)
         + (SELECT coalesce(sum(pg_column_size(e.*)), 0) FROM run_events e JOIN runs r USING (run_id)
            WHERE r.thread_id = %(t)s::uuid)
      AS n
"""
MEASURED = 20


def windows(turns: int) -> dict[str, int]:
    """Where each measured window starts: early, settled and late."""
    return {"early": 10, "settled": turns // 5 - MEASURED, "late": turns - MEASURED}


async def main(turns: int, each: int) -> None:
    starts = windows(turns)
    seconds: dict[str, list[float]] = {name: [] for name in starts}
    written: dict[str, list[int]] = {name: [] for name in starts}
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            client, pool = app.client, app.runtime.pool
            # (window, thread) in the order they take their measured turns: early, settled, late, early, ...
            threads = [
                (name, (await client.post("/threads", json={})).json()["thread_id"])
                for _ in range(each)
                for name in starts
            ]
            done = {tid: 0 for _, tid in threads}

            async def size(tid: str) -> int:
                async with pool.connection() as conn:
                    return (await (await conn.execute(THREAD_BYTES, {"t": tid})).fetchone())["n"]

            async def turn(tid: str) -> float:
                n = done[tid]
                started = time.perf_counter()
                response = await client.post(
                    f"/threads/{tid}/runs/wait", json=user(f"turn {n}: please remember item {n}")
                )
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                done[tid] += 1
                return elapsed

            for name, tid in threads:  # each thread up to its window
                while done[tid] < starts[name]:
                    await keep_statistics(pool, sum(done.values()))
                    await turn(tid)
            for _ in range(MEASURED):  # the windows in turn
                for name, tid in threads:
                    before = await size(tid)
                    seconds[name].append(await turn(tid))
                    written[name].append(await size(tid) - before)
            total = await size(threads[-1][1])

    def median_ms(name: str) -> float:
        return statistics.median(seconds[name]) * 1000

    def mean_bytes(name: str) -> float:
        return statistics.fmean(written[name])

    print(f"{each} threads a window, taking turns; a thread of {turns} turns holds {total / 1e6:.2f} MB")
    for name, start in starts.items():
        print(
            f"{name}: turns {start}-{start + MEASURED}: p50 {median_ms(name):6.2f} ms/turn, "
            f"{mean_bytes(name) / 1e3:7.2f} KB/turn"
        )
    print(
        f"ratio late/early: time {median_ms('late') / median_ms('early'):.2f}x (target <= 1.15), "
        f"bytes {mean_bytes('late') / mean_bytes('early'):.2f}x (target <= 1.2)"
    )
    print(
        f"ratio late/settled: time {median_ms('late') / median_ms('settled'):.2f}x, "
        f"bytes {mean_bytes('late') / mean_bytes('settled'):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=3, help="threads measured at each window")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.turns, arguments.threads))
