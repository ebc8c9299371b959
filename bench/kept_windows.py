"""What keeping the last rebuilt window saves a turn of a long conversation
(store/windows.py): the agent's graph with the appliance's saver, instant
model, durability="sync", on one thread of --warm turns, then blocks of
--turns turns alternating with and without kept windows, --rounds times, in
this one process. Printed: the CPU a turn of each block, the means and their
ratio.

    python -m bench.kept_windows [--warm 300] [--turns 100] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid

from bench.common import bench_settings, instant_model, timed
from tests.support.app import serve_app


async def main(warm: int, turns: int, rounds: int) -> None:
    said = {"messages": [("user", "hello there")]}
    cpu: dict[str, list[float]] = {"kept": [], "not kept": []}
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            graph, saver = app.runtime.graph, app.runtime.graph.checkpointer
            thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
            for _ in range(warm):
                await graph.ainvoke(said, thread, durability="sync")
            for _ in range(rounds):
                for mode in ("not kept", "kept"):
                    saver.keep_windows(graph.channels if mode == "kept" else {})
                    _, spent = await timed(turns, lambda: graph.ainvoke(said, thread, durability="sync"))
                    cpu[mode].append(spent * 1000)
    for mode, figures in cpu.items():
        runs = "  ".join(f"{f:.2f}" for f in figures)
        print(f"windows {mode:<8}: CPU a turn {runs} ms (mean {statistics.fmean(figures):.2f} ms)")
    kept, not_kept = statistics.fmean(cpu["kept"]), statistics.fmean(cpu["not kept"])
    print(f"kept/not kept: {kept / not_kept:.2f}x the CPU a turn, {not_kept - kept:.2f} ms less")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.warm, args.turns, args.rounds))
