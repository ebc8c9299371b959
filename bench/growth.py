"""(g) Does a turn cost more as the conversation grows? 1,000 turns on one
thread through POST /threads/{id}/runs/wait with an instant model and the
default memory budget; time per turn, and bytes the thread's rows gained per
turn (checkpoints, their blobs and writes, the message archive and the runs'
stream events), at turns 10-30 against turns 980-1,000 (issue 17's target);
and at turns 180-200, once the memory policy has filled the window and begun
to fold, against 980-1,000: whether a turn still costs more as the
conversation goes on, once the state has its full size.

    python -m bench.growth [--turns 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import bench_settings, instant_model, keep_statistics
from tests.support.app import serve_app

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


def window(turns: int) -> tuple[range, range, range]:
    """The early, settled and late turns measured."""
    return range(10, 30), range(turns // 5 - 20, turns // 5), range(turns - 20, turns)


async def main(turns: int) -> None:
    early, settled, late = window(turns)
    measured = set(early) | set(settled) | set(late)
    seconds: dict[int, float] = {}
    written: dict[int, int] = {}
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            client, pool = app.client, app.runtime.pool
            tid = (await client.post("/threads", json={})).json()["thread_id"]

            async def size() -> int:
                async with pool.connection() as conn:
                    return (await (await conn.execute(THREAD_BYTES, {"t": tid})).fetchone())["n"]

            for n in range(turns):
                await keep_statistics(pool, n)
                body = {"input": {"messages": [{"role": "user", "content": f"turn {n}: please remember item {n}"}]}}
                before = await size() if n in measured else 0
                started = time.perf_counter()
                response = await client.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "agent", **body})
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if n in measured:
                    seconds[n] = elapsed
                    written[n] = await size() - before
            total = await size()

    def median_ms(turn_range: range) -> float:
        return statistics.median(seconds[n] for n in turn_range) * 1000

    def mean_bytes(turn_range: range) -> float:
        return statistics.fmean(written[n] for n in turn_range)

    print(f"{turns} turns on one thread; the thread's rows hold {total / 1e6:.2f} MB")
    for name, turn_range in (("early", early), ("settled", settled), ("late", late)):
        print(
            f"{name}: turns {turn_range.start}-{turn_range.stop}: p50 {median_ms(turn_range):6.2f} ms/turn, "
            f"{mean_bytes(turn_range) / 1e3:7.2f} KB/turn"
        )
    print(
        f"ratio late/early: time {median_ms(late) / median_ms(early):.2f}x (target <= 1.15), "
        f"bytes {mean_bytes(late) / mean_bytes(early):.2f}x (target <= 1.2)"
    )
    print(
        f"ratio late/settled: time {median_ms(late) / median_ms(settled):.2f}x, "
        f"bytes {mean_bytes(late) / mean_bytes(settled):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    asyncio.run(main(parser.parse_args().turns))
