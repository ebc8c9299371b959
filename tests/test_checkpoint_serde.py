"""The checkpoints' serializer: messages come back as LangGraph's own decoder
builds them, without being validated a second time; anything else, and a
message written with other fields, takes LangGraph's path."""

from __future__ import annotations

import ormsgpack
import pytest
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Interrupt, Send

from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.serde import CheckpointSerializer

MESSAGES = [
    HumanMessage("what is the backup schedule?", id="h1", name="ana", additional_kwargs={"lang": "en"}),
    AIMessage(
        "Nightly [1].",
        id="a1",
        response_metadata={"citations": [{"n": 1, "source": "ops.md"}], "answer_mode": "generated"},
        usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
    ),
    AIMessage("", id="a2", tool_calls=[{"name": "search", "args": {"q": "backup"}, "id": "c1", "type": "tool_call"}]),
    ToolMessage("found 2", tool_call_id="c1", id="t1", artifact={"hits": 2}, status="success"),
    SystemMessage("be brief", id="s1"),
    ChatMessage("hello", role="reviewer", id="x1"),
    FunctionMessage("42", name="answer", id="f1"),
    RemoveMessage(id="h1"),
    HumanMessage([{"type": "text", "text": "a list of parts"}]),
]
SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")


def slots(message):
    return type(message), *(getattr(message, slot) for slot in SLOTS)


def test_messages_come_back_as_langgraph_builds_them():
    typed = JsonPlusSerializer().dumps_typed(_DeltaSnapshot(MESSAGES))
    ours, theirs = CheckpointSerializer().loads_typed(typed), JsonPlusSerializer().loads_typed(typed)
    assert isinstance(ours, _DeltaSnapshot)
    assert [slots(m) for m in ours.value] == [slots(m) for m in theirs.value]
    assert ours.value == MESSAGES
    assert ours.value[2].tool_calls[0]["args"] == {"q": "backup"}
    assert ours.value[0].model_dump() == MESSAGES[0].model_dump()


async def test_the_checkpointer_rebuilds_a_window_without_validating_it_again(monkeypatch):
    serde = PooledPostgresSaver("postgresql://unused").serde
    typed = serde.dumps_typed(_DeltaSnapshot(MESSAGES * 20))
    validated = []
    for cls in {type(m) for m in MESSAGES}:
        init = cls.__init__

        def counted(self, *args, _init=init, **kwargs):
            validated.append(type(self))
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    window = serde.loads_typed(typed)
    assert window.value == MESSAGES * 20
    assert validated == []


def test_a_message_written_with_other_fields_is_validated_as_before():
    # An AIMessage as an older LangChain wrote it: no tool_calls field, the
    # call only in additional_kwargs. Validation is what fills tool_calls in.
    old = {
        "content": "",
        "additional_kwargs": {"tool_calls": [{"id": "c9", "function": {"name": "search", "arguments": '{"q": "x"}'}}]},
        "type": "ai",
        "id": "a9",
    }
    written = ormsgpack.packb((AIMessage.__module__, "AIMessage", old, "model_validate_json"))
    payload = ormsgpack.packb([ormsgpack.Ext(EXT_PYDANTIC_V2, written)])
    [message] = CheckpointSerializer().loads_typed(("msgpack", payload))
    assert message.tool_calls == [{"name": "search", "args": {"q": "x"}, "id": "c9", "type": "tool_call"}]


@pytest.mark.parametrize(
    "value",
    [
        Send("node", {"question": "q"}),
        Interrupt(value={"ask": "approve?"}, id="i1"),
        {"nested": [Interrupt(value=1, id="i2"), AIMessage("in a dict", id="a3")], 7: "non-string key"},
        _DeltaSnapshot([]),
        None,
        b"raw bytes",
    ],
)
def test_everything_else_decodes_as_langgraph_decodes_it(value):
    typed = JsonPlusSerializer().dumps_typed(value)
    assert CheckpointSerializer().loads_typed(typed) == JsonPlusSerializer().loads_typed(typed) == value
