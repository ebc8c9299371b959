"""Graph state to JSON-ready data, in the Agent Server's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from langchain_core.messages import BaseMessage
from langgraph.types import Interrupt, StateSnapshot
from pydantic import BaseModel


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return value.model_dump(mode="json")
    if isinstance(value, Interrupt):
        return {"value": jsonable(value.value), "id": value.id}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _plain(value: Any) -> Any:
    """msgspec's hook for what it does not encode itself (it does dicts, lists,
    strings, numbers, datetimes, UUIDs and dataclasses at C speed)."""
    if isinstance(value, BaseMessage):
        # Its fields as they are, for msgspec to encode: what model_dump gives
        # (a message has no serializer of its own), without pydantic's copy first.
        extra = value.__pydantic_extra__
        return {**value.__dict__, **extra} if extra else value.__dict__
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


to_json = msgspec.json.Encoder(enc_hook=_plain).encode  # the one JSON encoder of stream events
# The modes that carry messages in bulk, with nothing but dicts, lists and messages
# around them; the others may hold an Interrupt, which the Agent Server shows as value and id.
_ONE_PASS_MODES = frozenset({"values", "messages"})


def stream_json(mode: str, chunk: Any) -> bytes:
    """A stream chunk as the JSON bytes a client receives: messages and values
    encoded in one pass, without a plain copy of the tree built first."""
    if mode in _ONE_PASS_MODES and not (isinstance(chunk, dict) and "__interrupt__" in chunk):
        try:
            return to_json(chunk)
        except (TypeError, ValueError, OverflowError):
            pass  # a key msgspec does not take: the slow path makes it a string
    return to_json(jsonable(chunk))


def checkpoint_ref(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config or "checkpoint_id" not in config.get("configurable", {}):
        return None
    c = config["configurable"]
    return {
        "thread_id": c.get("thread_id"),
        "checkpoint_ns": c.get("checkpoint_ns", ""),
        "checkpoint_id": c["checkpoint_id"],
    }


def thread_state(snapshot: StateSnapshot) -> dict[str, Any]:
    """A StateSnapshot as the Agent Server's ThreadState."""
    return {
        "values": jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": t.id,
                "name": t.name,
                "error": str(t.error) if t.error else None,
                "interrupts": jsonable([{"value": i.value, "id": i.id} for i in t.interrupts]),
                "checkpoint": None,
                "state": None,
                "result": jsonable(t.result),
            }
            for t in snapshot.tasks
        ],
        "checkpoint": checkpoint_ref(snapshot.config),
        "metadata": jsonable(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "parent_checkpoint": checkpoint_ref(snapshot.parent_config),
        "interrupts": jsonable([{"value": i.value, "id": i.id} for i in snapshot.interrupts]),
    }


def run_json(run: Any) -> dict[str, Any]:
    """A RunRecord as the Agent Server's Run."""
    return {
        "run_id": str(run.run_id),
        "thread_id": str(run.thread_id),
        "assistant_id": run.assistant_id,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "status": run.status,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
    }


# A checkpoint is written with msgpack, which holds integers of 64 bits.
STORABLE_INT_MIN, STORABLE_INT_MAX = -(2**63), 2**64 - 1


def integral(value: Any) -> Any:
    """JSON Schema's integer includes 10.0: such a float counts as the integer it is."""
    if isinstance(value, float) and value.is_integer() and STORABLE_INT_MIN <= value <= STORABLE_INT_MAX:
        return int(value)
    if isinstance(value, list):
        return [integral(item) for item in value]
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    return value


def oversized_int(value: Any, where: str) -> str | None:
    """Where an integer too large for a checkpoint is, if there is one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return where if not STORABLE_INT_MIN <= value <= STORABLE_INT_MAX else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if found := oversized_int(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"):
            return found
    return None
