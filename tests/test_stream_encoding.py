"""A stream chunk is encoded once, straight to JSON bytes: the same JSON the
plain-tree path (``jsonable``, then encode) gives, for every mode."""

from __future__ import annotations

import json
import uuid

import msgspec
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.types import Interrupt

from appliance.engine.jsonable import jsonable, stream_json

MESSAGES = [
    HumanMessage("How many legs has a bee?", id="h1"),
    AIMessage("", id="a1", tool_calls=[{"name": "search", "args": {"q": "bee legs"}, "id": "c1"}]),
    ToolMessage("Bees have six legs.", tool_call_id="c1", id="t1", artifact={"hits": 1}, source_page=3),
    AIMessage(
        [{"type": "text", "text": "Six [1]."}],
        id="a2",
        usage_metadata={"input_tokens": 9, "output_tokens": 3, "total_tokens": 12},
        response_metadata={"citations": [{"n": 1, "source": uuid.uuid4()}]},
    ),
]
VALUES = {
    "messages": MESSAGES,
    "summary": "",
    "passages": [{"text": "Bees have six legs.", "score": 0.81, "page": 3, "source": uuid.uuid4()}],
    "answer_mode": "generated",
    "degraded": None,
}
TOKEN = (
    AIMessageChunk("Six", id="run-1"),
    {
        "langgraph_node": "respond",
        "langgraph_triggers": ("branch:to:respond",),
        "langgraph_step": 4,
        "ls_temperature": 0.2,
    },
)


def plain(chunk: object) -> object:
    return json.loads(msgspec.json.encode(jsonable(chunk)))


def test_values_and_message_tokens_encode_as_the_plain_tree_does():
    assert json.loads(stream_json("values", VALUES)) == plain(VALUES)
    assert json.loads(stream_json("messages", TOKEN)) == plain(TOKEN)


def test_an_interrupt_keeps_the_agent_servers_shape_in_every_mode():
    paused = {"__interrupt__": (Interrupt(value={"question": "send it?"}, id="i1"),)}
    for mode in ("values", "updates"):
        assert json.loads(stream_json(mode, paused)) == {
            "__interrupt__": [{"value": {"question": "send it?"}, "id": "i1"}]
        }


def test_what_the_encoder_does_not_take_falls_back_to_the_plain_tree():
    odd = {"messages": MESSAGES[:1], "by_number": {(1, 2): "a tuple as a key"}}
    assert json.loads(stream_json("values", odd)) == plain(odd)
