"""What the agent knows of a tool, and what a call of one gives back."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

BUILT_IN = ("search_documents", "calculator", "current_time")


class ToolError(Exception):
    """A call that failed in a way the model can act on: bad arguments, a
    refusal, a timeout. Its message goes back to the model as the tool's result."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One tool a run may call. ``ref`` is how an assistant names it: a
    built-in tool's name, or ``server/tool``."""

    ref: str
    name: str
    description: str
    input_schema: dict[str, Any]
    server: str | None = None
    server_id: uuid.UUID | None = None
    requires_approval: bool = False
    # Safe to send again when a crash left its outcome unknown.
    idempotent: bool = False
    # The client's own (OpenAI's tools): a call of it is handed back, not made.
    client: bool = False

    def as_openai(self) -> dict[str, Any]:
        """The shape chat models bind tools in (OpenAI's function tool)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """A tool's answer, as the ledger keeps it and the model reads it."""

    text: str
    is_error: bool = False
    structured: Any = None
    # The outcome of a call a crash interrupted is not known.
    unknown: bool = False


class RunTools(msgspec.Struct, frozen=True):
    """The tools a run has now, and why any it was given are not among them."""

    specs: list[ToolSpec]
    unavailable: dict[str, str]  # tool server name: why its tools are missing

    def named(self, name: str) -> ToolSpec | None:
        return next((s for s in self.specs if s.name == name), None)
