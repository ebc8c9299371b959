"""Python's cyclic garbage collector, set for a server with many turns in flight.

Start-up leaves millions of long-lived objects (torch, chromadb, the model):
they are moved out of the collector's reach (``gc.freeze``), so a full
collection walks only what the server made since. With Python's default
thresholds (700, 10, 10) a youngest-generation collection ran every turn or
so, and under a thousand streams at once the collector ran full collections
over every turn in flight about ten times a load, a third of the servers'
CPU (``bench.stream_load``). Collecting the youngest generation every
YOUNG allocations and the older ones less often keeps that to about a tenth;
reference counting still frees almost everything at once, so memory does not
wait on the collector (the bench's peak RSS did not move).

The middle generation holds what the youngest's collections found alive: a
turn in flight's objects, nearly all of them. Collected every MIDDLE
youngest collections it freed nothing, walking those turns again, so it is
collected five times less often than it was (100, not 20). At a thousand
turns at once the collector's CPU fell to 0.87x (12.3% of the CPU to 10.5%,
``bench.collector_cost``); at ten thousand, two collections of it held a
server's loop 1.1–1.2 s each, where ten had held it 0.5–1 s.
"""

from __future__ import annotations

import gc

YOUNG, MIDDLE, OLD = 20_000, 100, 20


def settle_after_startup() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
