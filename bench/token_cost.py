"""What a streamed token costs the server: a real answer is hundreds of tokens,
and each one goes from the model through the graph, the run's event log and
the SSE response to the client, as its own event.

One server process at a time (``bench.stream_load``'s, with a model that
streams word by word, pausing --gap seconds between words, as a model does)
answers --turns streamed turns one after another, each a new conversation
asking for messages-tuple and values; its CPU is read from /proc. Servers
answering --short words and --long words alternate --rounds times in one run.

Printed: the server's CPU a turn at each length, what a token adds
(the difference over the extra words), and how many times a --long answer
costs a --short one. Run: python -m bench.token_cost
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import cpu_seconds
from bench.stream_load import Tally, make_threads, one_stream, run_body, wait_healthy
from tests.support.process import NO_RATE_LIMITS
from tests.support.services import Databases, free_port, postgres_server

WARM_UP = 20


async def stream_turns(port: int, key: str, threads: list[str]) -> None:
    tally, body = Tally(), run_body(None)
    for thread_id in threads:
        await one_stream(port, key, thread_id, body, tally)
    if tally.failures:
        raise RuntimeError(f"{len(tally.failures)} turns failed: {tally.failures[:3]}")


def cpu_a_turn(env: dict[str, str], data_dir: Path, words: int, gap_s: float, turns: int) -> float:
    """A fresh server process answering ``turns`` streamed turns of ``words`` words: its CPU seconds a turn."""
    port = free_port()
    command = [sys.executable, "-m", "bench.stream_load", "--serve", str(port)]
    command += ["--words", str(words), "--answer-seconds", str(words * gap_s)]
    server = subprocess.Popen(command, env=env)
    try:
        wait_healthy(port)
        key = (data_dir / "admin-key").read_text().strip()
        threads = asyncio.run(make_threads(f"http://127.0.0.1:{port}", key, turns + WARM_UP))
        asyncio.run(stream_turns(port, key, threads[:WARM_UP]))
        before = cpu_seconds(server.pid)
        asyncio.run(stream_turns(port, key, threads[WARM_UP:]))
        return (cpu_seconds(server.pid) - before) / turns
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", type=int, default=10, help="words of the short answer")
    parser.add_argument("--long", type=int, default=310, help="words of the long answer")
    parser.add_argument("--gap", type=float, default=0.0005, help="seconds between the model's words")
    parser.add_argument("--turns", type=int, default=100, help="turns timed a server")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    cpu: dict[int, list[float]] = {args.short: [], args.long: []}
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp)) as server_url:
        databases = Databases(server_url)
        env = {
            **os.environ,
            "APPLIANCE_DATA_DIR": tmp,
            "APPLIANCE_DATABASE_URL": databases.create(),
            "APPLIANCE_LOG_LEVEL": "warning",
            **{f"APPLIANCE_{k.upper()}": v for k, v in NO_RATE_LIMITS.items()},
        }
        try:
            for _ in range(args.rounds):
                for words in cpu:
                    cpu[words].append(cpu_a_turn(env, Path(tmp), words, args.gap, args.turns))
        finally:
            databases.drop_all()

    short, long = (sum(cpu[w]) / len(cpu[w]) for w in (args.short, args.long))
    runs = {w: ", ".join(f"{c * 1000:.1f}" for c in cs) for w, cs in cpu.items()}
    print(
        f"{args.turns} streamed turns a server, {args.rounds} rounds; the model pauses {args.gap * 1000:.1f} ms a word"
    )
    print(f"server CPU a turn: {short * 1000:.1f} ms at {args.short} words ({runs[args.short]})")
    print(f"server CPU a turn: {long * 1000:.1f} ms at {args.long} words ({runs[args.long]})")
    print(
        f"a token: {(long - short) / (args.long - args.short) * 1e6:.0f} us of server CPU; "
        f"a {args.long}-word answer costs {long / short:.2f}x a {args.short}-word one"
    )


if __name__ == "__main__":
    main()
