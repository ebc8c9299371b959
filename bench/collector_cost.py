"""What Python's cyclic garbage collector costs a server with many turns in
flight, under the appliance's thresholds (appliance/collector.py) and under
others given on the command line.

One server in this process, its model 5 s an answer streamed word by word,
takes --streams SSE turns at once (each on a thread of its own, as
bench.stream_load's): --block batches under one setting, then as many
under the next, --rounds times. A block of several batches lets the middle
generation come due within it (its count goes on across batches, and another
setting's collections of it would reset it).
Printed for each batch: the process's CPU a turn (the load's client runs in
this process too, so its objects are collected with the server's), the
collections of each generation with their CPU, and the collector's share of
the CPU; then each setting's mean share and GC CPU a turn, and the ratio to
the appliance's setting.

    python -m bench.collector_cost [--streams 1000] [--rounds 2] [--block 3] [--try 20000,20,20 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import time
from collections import Counter

from appliance.collector import MIDDLE, OLD, YOUNG
from bench.common import bench_settings
from bench.stream_load import run_body, stream_request
from tests.support.app import serve_app
from tests.support.scripted_model import ScriptedChatModel, scripted_language_model

Thresholds = tuple[int, int, int]


class CollectorClock:
    """The CPU each generation's collections take, from gc.callbacks."""

    def __init__(self) -> None:
        self.cpu: Counter[int] = Counter()
        self.count: Counter[int] = Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu[info["generation"]] += time.process_time() - self._started
            self.count[info["generation"]] += 1


async def one_turn(port: int, key: str, thread_id: str, body: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(stream_request(thread_id, key, body))
    await writer.drain()
    received = await reader.read()
    writer.close()
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(received[:200].decode(errors="replace"))


async def main(streams: int, rounds: int, block: int, tried: list[Thresholds]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    reply = " ".join(f"word{i}" for i in range(10))
    chat = ScriptedChatModel(delay=0.5, reply=lambda messages, calls: reply)
    settings = [(YOUNG, MIDDLE, OLD), *tried]
    shares: dict[Thresholds, list[float]] = {s: [] for s in settings}
    gc_ms: dict[Thresholds, list[float]] = {s: [] for s in settings}
    limits = {"worker_slots": str(streams), "model_concurrency": str(streams)}
    with bench_settings(**limits) as config:
        async with serve_app(config, scripted_language_model(chat, name="five-seconds")) as app:
            port, key, body = int(app.url.rsplit(":", 1)[1]), app.admin_key, run_body(None)
            # Every batch's threads made first, so that nearly all the collections
            # (a middle generation's every MIDDLE youngest ones) fall within batches.
            made = [
                (await app.client.post("/threads", json={})).json()["thread_id"]
                for _ in range(rounds * len(settings) * block * streams)
            ]
            batches = iter(made[i : i + streams] for i in range(0, len(made), streams))
            for _ in range(rounds):
                for thresholds in [s for s in settings for _ in range(block)]:
                    threads = next(batches)
                    gc.set_threshold(*thresholds)
                    clock = CollectorClock()
                    gc.callbacks.append(clock)
                    spent = time.process_time()
                    try:
                        await asyncio.gather(*(one_turn(port, key, t, body) for t in threads))
                    finally:
                        spent = time.process_time() - spent
                        gc.callbacks.remove(clock)
                        gc.set_threshold(YOUNG, MIDDLE, OLD)
                    collected = sum(clock.cpu.values())
                    shares[thresholds].append(collected / spent)
                    gc_ms[thresholds].append(1000 * collected / streams)
                    per_generation = ", ".join(
                        f"gen{g} {clock.count[g]}x {clock.cpu[g]:.2f} s" for g in sorted(clock.count)
                    )
                    print(
                        f"thresholds {thresholds}: CPU {1000 * spent / streams:.1f} ms a turn; "
                        f"collections {per_generation or 'none'}; the collector's share {collected / spent:.1%}"
                    )
    base = (YOUNG, MIDDLE, OLD)
    for thresholds in settings:
        name = "the appliance's" if thresholds == base else "tried"
        share, ms = statistics.fmean(shares[thresholds]), statistics.fmean(gc_ms[thresholds])
        ratio = ms / statistics.fmean(gc_ms[base])
        print(
            f"{name} {thresholds}: the collector's share {share:.1%}, {ms:.2f} ms of CPU a turn "
            f"({ratio:.2f}x the appliance's)"
        )


def thresholds(text: str) -> Thresholds:
    young, middle, old = (int(part) for part in text.split(","))
    return young, middle, old


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--block", type=int, default=3, help="batches in a row under one setting")
    parser.add_argument("--try", dest="tried", type=thresholds, nargs="*", default=[(20_000, 20, 20)])
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.rounds, args.block, args.tried))
