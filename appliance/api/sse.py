"""Server-Sent Events framing, as LangGraph's Agent Server sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from appliance.services.jsonable import jsonable
from appliance.services.runs import ActiveRun

_encode = msgspec.json.Encoder().encode

HEARTBEAT = b": heartbeat\n\n"


def frame(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


HEARTBEAT_SECONDS = 15.0


async def run_events(run: ActiveRun) -> AsyncIterator[bytes]:
    yield frame("metadata", {"run_id": str(run.run_id), "attempt": 1})
    async for mode, chunk in run.events(heartbeat=HEARTBEAT_SECONDS):
        if mode == "heartbeat":
            yield HEARTBEAT
        else:
            yield frame(mode, jsonable(chunk))
