"""The agent's state, as stored in every checkpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from typing_extensions import TypedDict

from appliance.agent.messages import merge_messages

# A checkpoint stores a step's new messages, and the whole window only every
# SNAPSHOT_EVERY updates: what a turn writes does not grow with the thread, and
# a read replays at most that many writes.
SNAPSHOT_EVERY = 40

# Keys whose values stay the same over many turns (a fold changes them):
# stored once per version, not inline in every checkpoint (store/checkpointer.py).
STORED_APART = frozenset({"summary", "archive_head"})


# Nodes read every key with a default: a state update as a node
# (threads.update_state) can leave a thread before any node with only some set.
class AgentState(TypedDict, total=False):
    # The conversation's window: its latest turns, in order. Older turns are
    # folded into the summary and moved to the message archive
    # (store/archive.py), so the state, and a turn's work, stay bounded.
    messages: Annotated[list[AnyMessage], DeltaChannel(merge_messages, snapshot_frequency=SNAPSHOT_EVERY)]
    # The running summary of every archived message and of messages[:folded];
    # the prompt carries the summary and messages[folded:] only. (folded is
    # absent, 0, once folds archive: only threads from before the archive
    # kept folded messages in the window, and their next fold sets it to 0.)
    summary: str
    folded: int
    # How many of the conversation's messages are archived (the position of
    # messages[0] in the whole conversation), and the newest archive batch.
    archived: int
    archive_head: str | None

    # This turn's retrieval, reset when a turn starts. ``query`` is what is
    # searched (the question, then each rewrite); ``passages`` what the last
    # search found and ``relevant`` those graded relevant; ``retrievals`` is
    # the trace of every search this turn: {query, found, relevant}.
    question: str
    use_documents: bool
    query: str
    passages: list[dict[str, Any]]
    relevant: list[dict[str, Any]]
    retrievals: list[dict[str, Any]]
    # The sentences that answer the question, scored ({chunk_id, start, end,
    # score, similarity, coverage}), and the model's draft before it is checked.
    evidence: list[dict[str, Any]]
    draft: str
    # What the draft cost: the tokens of the whole prompt the model read, and of the draft.
    draft_usage: dict[str, int]
    # The sources of the final answer, numbered as its [n] markers, each with
    # the spans of its text that support the answer.
    citations: list[dict[str, Any]]
    # How the answer was made: the model's draft, checked against its sources
    # (generated), the sources' own sentences quoted when the draft failed the
    # check (extractive), or the honest refusal (refused).
    answer_mode: Literal["generated", "extractive", "refused"] | None
    # This turn's tool use (an assistant with tools): model steps taken, and
    # failed calls by tool name. ``passages`` then holds every passage
    # search_documents returned this turn, in the order the answer cites them.
    tool_steps: int
    tool_failures: dict[str, int]
    # Why this turn's search was less than whole (the vector index unavailable:
    # lexical search alone), or None; also on the answer's response_metadata.
    degraded: str | None


def new_turn(state: AgentState) -> dict[str, Any]:
    """The keys every turn resets, as its first node writes them: the newest
    question, and nothing yet found, drafted or cited for it."""
    question = next((str(m.text) for m in reversed(state.get("messages", [])) if isinstance(m, HumanMessage)), "")
    return {"question": question, "query": question, "passages": [], "relevant": [], "retrievals": [],
            "citations": [], "evidence": [], "draft": "", "draft_usage": {}, "answer_mode": None, "degraded": None,
            "tool_steps": 0, "tool_failures": {}}  # fmt: skip


def changed(state: AgentState, update: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``update`` the state does not already hold with that value.
    Each key written costs a turn a checkpoint write, and a stored blob when
    its value is a list or a dict, every turn, even when it resets a key
    already reset; an absent key is still written, so every key is in the values."""
    return {key: value for key, value in update.items() if key not in state or state[key] != value}
