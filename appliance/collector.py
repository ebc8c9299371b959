"""Python's cyclic garbage collector, set for a server with many turns in flight.

Start-up leaves millions of long-lived objects (torch, chromadb, the model):
they are moved out of the collector's reach (``gc.freeze``), so a full
collection walks only what the server made since. With Python's default
thresholds (700, 10, 10) a youngest-generation collection ran every turn or
so, and under a thousand streams at once the collector ran full collections
over every turn in flight about ten times a load, a third of the servers'
CPU (``bench.stream_load``). Collecting the youngest generation every
YOUNG allocations and the older ones less often keeps that to a few percent;
reference counting still frees almost everything at once, so memory does not
wait on the collector (the bench's peak RSS did not move).
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 20_000, 20, 20


def settle_after_startup() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
