"""``appliance worker``: execute runs from the queue, without serving HTTP.

Start it on any host that reaches the database, Chroma and the model; set
``APPLIANCE_WORKER_SLOTS=0`` on the API servers to leave every run to workers.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from appliance.settings import Settings


async def run_worker(settings: Settings) -> None:
    from appliance.collector import settle_after_startup
    from appliance.runtime import open_runtime

    async with open_runtime(settings) as runtime:
        settle_after_startup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(
            f"worker {runtime.worker.worker_id} is taking runs, {settings.worker_slots} at a time; "
            f"Ctrl-C hands unfinished runs back to the queue",
            flush=True,
        )
        await stop.wait()


def worker(settings: Settings) -> int:
    if settings.worker_slots == 0:
        print("appliance worker: APPLIANCE_WORKER_SLOTS is 0; give it the runs it may take at once", file=sys.stderr)
        return 2
    asyncio.run(run_worker(settings))
    return 0
