"""(b) Reading the latest state of a thread that has 1,000 checkpoints, after
a cold start: a fresh process opens the runtime, then reads it repeatedly,
through the service (graph.aget_state) and through GET /threads/{id}/state.

    python -m bench.state_read [--checkpoints 1000] [--reads 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid

from bench.common import bench_settings, instant_model, summary
from tests.support.app import serve_app


async def fill(settings, checkpoints: int) -> str:
    """A thread with at least ``checkpoints`` checkpoints (each turn writes three)."""
    async with serve_app(settings, instant_model()) as app:
        tid = (await app.client.post("/threads", json={})).json()["thread_id"]
        config = {"configurable": {"thread_id": tid}}
        for n in range(-(-checkpoints // 3)):
            await app.runtime.graph.ainvoke({"messages": [("user", f"message number {n}")]}, config)
        async with app.runtime.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (tid,))
            ).fetchone()
        print(f"thread {tid}: {row['n']} checkpoints, {2 * -(-checkpoints // 3)} messages")
        return tid


async def measure(env: dict[str, str], tid: str, reads: int) -> None:
    """Runs in a fresh process: the cold start."""
    from appliance.settings import load_settings

    async with serve_app(load_settings(env=env), instant_model()) as app:
        started = time.perf_counter()
        await app.runtime.graph.aget_state({"configurable": {"thread_id": tid}})
        first = time.perf_counter() - started
        service, http = [], []
        for _ in range(reads):
            started = time.perf_counter()
            await app.runtime.threads.state("default", uuid.UUID(tid))
            service.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = await app.client.get(f"/threads/{tid}/state")
            http.append(time.perf_counter() - started)
            assert response.status_code == 200
    print(f"first read after cold start: {first * 1000:.2f} ms")
    print(summary("service state read", service))
    print(summary("HTTP GET /threads/{id}/state", http))
    print("target: p50 under 10 ms")


async def main(checkpoints: int, reads: int) -> None:
    with bench_settings() as settings:
        tid = await fill(settings, checkpoints)
        env = {
            "APPLIANCE_DATA_DIR": settings.data_dir,
            "APPLIANCE_DATABASE_URL": settings.database_url,
            "APPLIANCE_LOG_LEVEL": "warning",
        }
        subprocess.run(
            [sys.executable, "-m", "bench.state_read", "--measure", json.dumps(env), tid, "--reads", str(reads)],
            check=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--measure", nargs=2, metavar=("ENV", "THREAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        asyncio.run(measure(json.loads(args.measure[0]), args.measure[1], args.reads))
    else:
        asyncio.run(main(args.checkpoints, args.reads))
