"""What a run asks of its worker: one typed structure, built by the run
service when the run is queued and decoded by the executor that runs it, in
whichever process that is (stored as the run's ``kwargs``)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from appliance.agent.context import AssistantContext

# When a run's checkpoints are written (LangGraph's ``durability``).
Durability = Literal["sync", "async", "exit"]
# Each step's checkpoint before the next step: a run cut off goes on from its last
# step. Not LangGraph's and the Agent Server's async: measured, async saved a lone
# turn 4 ms, but cost 1,000 streams at once 15-30% more CPU a turn (bench.stream_load).
DEFAULT_DURABILITY: Durability = "sync"


class RunCommand(msgspec.Struct, frozen=True, omit_defaults=True):
    """Resuming a paused run: the value for its interrupt, a state update, where to go."""

    resume: Any = None
    update: dict[str, Any] | None = None
    goto: str | list[str] | None = None


class RunRequest(msgspec.Struct, frozen=True, kw_only=True):
    # What the run's assistant configures, resolved when it was queued (so a
    # later change to the assistant changes the next run, not this one).
    assistant_version: int
    context: AssistantContext
    # A new message (``{"messages": [...]}``, as JSON) or a command, or neither: go on.
    input: dict[str, Any] | None = None
    command: RunCommand | None = None
    configurable: dict[str, Any] = msgspec.field(default_factory=dict)
    recursion_limit: int | None = None
    stream_mode: list[str] = msgspec.field(default_factory=lambda: ["values"])
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    checkpoint_id: str | None = None
    webhook: str | None = None
    durability: Durability = DEFAULT_DURABILITY


def to_kwargs(request: RunRequest) -> dict[str, Any]:
    """As the run's stored (and shown) ``kwargs``."""
    return msgspec.to_builtins(request)


def from_kwargs(kwargs: dict[str, Any]) -> RunRequest:
    return msgspec.convert(kwargs, RunRequest)
