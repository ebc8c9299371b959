"""(b) Reading a long conversation, after a cold start: the latest state of a
thread with 1,000 turns, read by a fresh process through the service
(graph.aget_state, which rebuilds it each time) and through
GET /threads/{id}/state (the first read builds it and keeps its rendering,
the next are sent as kept); then a search page of
50 such threads with their values, read one after another against together
(as the search does: the states kept found in one query, the others built side
by side).

    python -m bench.state_read [--turns 1000] [--reads 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid

from appliance.store.checkpointer import thread_config
from bench.common import bench_settings, instant_model, keep_statistics, summary
from tests.support.app import serve_app

SEARCH_PAGE = 50


async def fill(settings, turns: int) -> str:
    """A thread with ``turns`` turns, and SEARCH_PAGE short ones beside it."""
    async with serve_app(settings, instant_model()) as app:
        tid = (await app.client.post("/threads", json={"metadata": {"long": True}})).json()["thread_id"]
        config = {"configurable": {"thread_id": tid}}
        for n in range(turns):
            await keep_statistics(app.runtime.pool, n)
            await app.runtime.graph.ainvoke({"messages": [("user", f"message number {n}")]}, config)
        for _ in range(SEARCH_PAGE):
            other = (await app.client.post("/threads", json={"metadata": {"page": True}})).json()["thread_id"]
            for n in range(20):
                await app.runtime.graph.ainvoke({"messages": [("user", f"message {n}")]}, thread_config(other))
        async with app.runtime.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (tid,))
            ).fetchone()
            await conn.execute("ANALYZE")
        state = await app.runtime.graph.aget_state(config)
        print(
            f"thread {tid}: {turns} turns, {row['n']} checkpoints; the state holds {len(state.values['messages'])} "
            f"messages, {state.values.get('archived', 0)} archived"
        )
        return tid


async def measure(env: dict[str, str], tid: str, reads: int) -> None:
    """Runs in a fresh process: the cold start."""
    from appliance.settings import load_settings

    async with serve_app(load_settings(env=env), instant_model()) as app:
        started = time.perf_counter()
        await app.runtime.graph.aget_state({"configurable": {"thread_id": tid}})
        first = time.perf_counter() - started
        started = time.perf_counter()
        assert (await app.client.get(f"/threads/{tid}/state")).status_code == 200
        first_http = time.perf_counter() - started
        service, http = [], []
        for _ in range(reads):
            started = time.perf_counter()
            await app.runtime.threads.state("default", uuid.UUID(tid))
            service.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = await app.client.get(f"/threads/{tid}/state")
            http.append(time.perf_counter() - started)
            assert response.status_code == 200

        threads = app.runtime.threads
        page = [r.thread_id for r in await threads.search("default", _page_query())]
        one_by_one, side_by_side, search = [], [], []
        for _ in range(20):
            started = time.perf_counter()
            for thread_id in page:
                await threads.values(thread_id)
            one_by_one.append(time.perf_counter() - started)
            started = time.perf_counter()
            await threads.values_of(page)
            side_by_side.append(time.perf_counter() - started)
            started = time.perf_counter()
            response = await app.client.post("/threads/search", json={"metadata": {"page": True}, "limit": SEARCH_PAGE})
            search.append(time.perf_counter() - started)
            assert len(response.json()) == SEARCH_PAGE
    print(f"first read after cold start: {first * 1000:.2f} ms")
    print(f"first HTTP read (builds the state and keeps its rendering): {first_http * 1000:.2f} ms")
    print(summary("service state read", service))
    print(summary("HTTP GET /threads/{id}/state", http))
    print("target: p50 under 5 ms over HTTP")
    print(summary(f"{SEARCH_PAGE} threads' values, one by one", one_by_one))
    print(summary(f"{SEARCH_PAGE} threads' values, together", side_by_side))
    print(summary(f"HTTP POST /threads/search, {SEARCH_PAGE} with values", search))
    ratio = sorted(one_by_one)[len(one_by_one) // 2] / sorted(side_by_side)[len(side_by_side) // 2]
    print(f"ratio one by one / together: p50 {ratio:.2f}x")


def _page_query():
    from appliance.store.threads import ThreadQuery

    return ThreadQuery(metadata={"page": True}, limit=SEARCH_PAGE)


async def main(turns: int, reads: int) -> None:
    with bench_settings() as settings:
        tid = await fill(settings, turns)
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
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--measure", nargs=2, metavar=("ENV", "THREAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        asyncio.run(measure(json.loads(args.measure[0]), args.measure[1], args.reads))
    else:
        asyncio.run(main(args.turns, args.reads))
