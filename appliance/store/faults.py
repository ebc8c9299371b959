"""What a failure of the storage underneath means for the caller.

Two kinds need their own answer, everywhere (the API, the run engine, ingestion):
- the database is unavailable (PostgreSQL restarting, unreachable, or every
  pooled connection busy): nothing was decided, the caller should try again
  in a few seconds, and a run goes back to the queue;
- a disk is full (PostgreSQL's ``disk_full``, or ENOSPC from a file write):
  retrying at once will not help; the caller is told to free space (507).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Literal

import psycopg
import psycopg_pool

Fault = Literal["unavailable", "full"]
RETRY_AFTER_S = 5

# SQLSTATEs of a server that is shutting down or starting up: it will answer again.
_RESTARTING = {"57P01", "57P02", "57P03"}


def _fault_of(exc: BaseException) -> Fault | None:
    if isinstance(exc, psycopg.errors.DiskFull):
        return "full"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "full"
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return "unavailable"
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: the connection itself failed (refused, reset, closed).
        state = exc.sqlstate
        if state is None or state.startswith("08") or state in _RESTARTING:
            return "unavailable"
    return None


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what caused it, and so on (each once)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def storage_fault(exc: BaseException | None) -> Fault | None:
    """The storage fault behind ``exc`` (or behind what caused it), if any."""
    return next((fault for cause in causes(exc) if (fault := _fault_of(cause))), None)
