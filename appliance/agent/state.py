"""The agent's state, as stored in every checkpoint."""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


class AgentState(TypedDict, total=False):
    # Every turn of the conversation, in order; never trimmed, so a thread's
    # history can always be read back whole.
    messages: Annotated[list[AnyMessage], add_messages]
    # The running summary of messages[:folded]; the prompt carries the summary
    # and messages[folded:] only, so it stays bounded however long the thread.
    summary: str
    folded: int
