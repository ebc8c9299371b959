"""What the rate limiter costs each request: the API key's lookup alone (what
authentication did before), against the lookup and the request counted in
PostgreSQL in the same statement (what it does now), with the same concurrent
callers, in one run.

    python -m bench.rate_limit_cost [--callers 16] [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from appliance.services.limits import Limits, defaults_from
from appliance.store.audit import Actor
from appliance.store.database import open_pool
from appliance.store.keys import KeyStore
from appliance.store.limits import LimitStore
from appliance.store.migrations import migrate
from bench.common import bench_settings, percentile


async def measure(step, callers: int, requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            await step()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller(requests // callers) for _ in range(callers)))
    return time.perf_counter() - started, latencies


async def main(callers: int, requests: int) -> None:
    # No limit is reached (0: none), so every request is counted and served.
    with bench_settings(limit_key_requests_per_minute="0", limit_tenant_requests_per_minute="0") as settings:
        pool = await open_pool(str(settings.database_url), min_size=callers, max_size=callers + 4)
        await migrate(pool)
        keys = KeyStore(pool)
        limits = Limits(LimitStore(pool), defaults_from(settings))
        _, secret = await keys.create("bench", name="bench", actor=Actor.host())

        async def authenticate() -> None:
            await keys.authenticate(secret)

        async def authenticate_and_count() -> None:
            limits.check_requests(await keys.admit(secret))

        results = {}
        for name, step in (("key lookup", authenticate), ("key lookup + counted", authenticate_and_count)):
            await measure(step, callers, callers * 10)  # warm up
            elapsed, latencies = await measure(step, callers, requests)
            results[name] = elapsed
            print(
                f"{name:<22} {callers} callers: {requests / elapsed:7.0f} requests/s  "
                f"p50 {percentile(latencies, 50) * 1000:5.2f} ms  p99 {percentile(latencies, 99) * 1000:5.2f} ms"
            )
        await pool.close()
    print(f"time per request, counted / lookup alone: {results['key lookup + counted'] / results['key lookup']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    asyncio.run(main(args.callers, args.requests))
