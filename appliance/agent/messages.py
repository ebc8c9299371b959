"""The reducer of the state's messages, as a ``DeltaChannel`` stores them: each
checkpoint keeps the step's new messages, not the whole list again, and a
state is rebuilt by replaying the writes since the last snapshot.

``add_messages`` semantics (update by id, append, ``RemoveMessage``), with two
differences a replayed channel needs:
- deterministic: a message without an id gets one derived from where it lands
  (the id of the message before it, its place in its write), never a random
  one, so every replay of the same writes gives the same ids;
- one pass for a batch of writes, however many (a replay hands over up to
  ``snapshot_frequency`` at once).
Applying writes one by one or all together gives the same list
(``DeltaChannel``'s batching invariance; ``tests/test_message_reducer.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk, RemoveMessage, convert_to_messages
from langchain_core.messages.utils import message_chunk_to_message
from langgraph.graph.message import REMOVE_ALL_MESSAGES

_IDS = uuid.UUID("6f1d3c2e-4b7a-5e58-9a0d-2c61f0b8e7a4")


def _as_messages(write: Any) -> list[BaseMessage]:
    items = write if isinstance(write, list) else [write]
    if all(isinstance(m, BaseMessage) and not isinstance(m, BaseMessageChunk) for m in items):
        return items
    return [message_chunk_to_message(m) for m in convert_to_messages(items)]


def merge_messages(state: Sequence[BaseMessage] | None, writes: Sequence[Any]) -> list[BaseMessage]:
    merged: list[BaseMessage | None] = list(state or [])
    where = {m.id: i for i, m in enumerate(merged) if m is not None}
    for write in writes:
        # The message a new one follows: what an id is derived from.
        last = next((m.id for m in reversed(merged) if m is not None), None) or ""
        removed: set[str] = set()  # as add_messages: removals within one write apply at its end
        for n, message in enumerate(_as_messages(write)):
            if message.id is None:
                derived = str(uuid.uuid5(_IDS, f"{last}\n{n}\n{message.type}\n{message.text}"))
                message = message.model_copy(update={"id": derived})
            if isinstance(message, RemoveMessage) and message.id == REMOVE_ALL_MESSAGES:
                merged, where, removed = [], {}, set()
            elif isinstance(message, RemoveMessage):
                if message.id not in where:
                    raise ValueError(f"Attempting to delete a message with an ID that doesn't exist ('{message.id}')")
                removed.add(message.id)
            elif (index := where.get(message.id)) is not None:
                removed.discard(message.id)
                merged[index] = message
            else:
                where[message.id] = len(merged)
                merged.append(message)
        for gone in removed:
            merged[where.pop(gone)] = None
    return [m for m in merged if m is not None]
