"""A turn writes what it changes: the keys a turn resets are written only
when they hold something to reset, so a plain conversation's turn does not
store a dozen empty lists and nulls again and again. A plain turn has
nothing for ``plan`` to decide, so it starts at ``respond``: a super-step,
and its checkpoint, fewer."""

from __future__ import annotations

import asyncio
import uuid

from langchain_core.messages import HumanMessage

from appliance.agent.state import changed
from tests.support.turns import new_thread, turn, writes_by_node

# Reset by every turn, by the node that starts it.
RESET_KEYS = {"passages", "relevant", "retrievals", "citations", "evidence", "draft", "draft_usage", "tool_steps"}


async def test_a_plain_turn_starts_at_respond_and_rewrites_only_the_keys_it_changes(scripted_app):
    tid = await new_thread(scripted_app.client)
    first = await turn(scripted_app.client, tid, "hello there")
    second = await turn(scripted_app.client, tid, "what can you do?")

    first_writes, second_writes = await writes_by_node(scripted_app.runtime, tid)
    assert set(first_writes) <= {"__start__", "respond"} and "respond" in first_writes, first_writes
    assert set(second_writes) <= {"__start__", "respond"}, second_writes
    assert RESET_KEYS <= first_writes["respond"]  # a new thread gets every key
    # The second turn's question is new; everything else it resets was
    # already reset, and its answer is generated as the first's was.
    assert not RESET_KEYS & second_writes["respond"], second_writes
    assert {"question", "query", "messages"} <= second_writes["respond"]
    assert "answer_mode" not in second_writes["respond"]
    for values in (first, second):
        assert RESET_KEYS <= set(values), sorted(values)
        assert values["citations"] == [] and values["retrievals"] == [] and values["answer_mode"] == "generated"
    assert second["question"] == "what can you do?"


def test_a_key_holding_something_is_reset_and_an_absent_one_is_written():
    state = {"messages": [HumanMessage("hi")], "passages": [{"chunk_id": "a"}], "draft": "", "question": "hi"}
    update = {"passages": [], "draft": "", "question": "hi", "citations": []}
    assert changed(state, update) == {"passages": [], "citations": []}


async def test_a_plain_turn_hands_nothing_to_a_thread(scripted_app):
    """Its edges are decided on the event loop (``agent.graph.on_loop``): LangGraph
    hands a plain function to its executor, a thread hop per decision."""
    loop, handed = asyncio.get_running_loop(), []
    run_in_executor = loop.run_in_executor

    def counting(executor, func, *args):
        handed.append(repr(func))
        return run_in_executor(executor, func, *args)

    thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
    loop.run_in_executor = counting
    try:
        for n in range(2):
            await scripted_app.runtime.graph.ainvoke({"messages": [HumanMessage(f"hello {n}")]}, thread)
    finally:
        del loop.run_in_executor
    assert handed == []


async def test_a_plain_turn_after_one_from_documents_keeps_none_of_that_turns_search(scripted_app):
    # A plain turn starts at respond, so respond resets what the turn before left.
    tid = await new_thread(scripted_app.client)
    await turn(scripted_app.client, tid, "hello there")
    # As a turn that answered from documents leaves the thread (set by hand: this app has no knowledge bases).
    searched = {
        "citations": [{"index": 1, "document_id": "d1", "source": "handbook.pdf", "text": "Forty days."}],
        "retrievals": [{"query": "vacation days", "found": 3, "relevant": 1}],
        "draft": "Forty days [1].",
        "answer_mode": "extractive",
    }
    response = await scripted_app.client.post(f"/threads/{tid}/state", json={"values": searched, "as_node": "respond"})
    assert response.status_code == 200, response.text

    values = await turn(scripted_app.client, tid, "thanks, and something else")
    assert values["citations"] == [] and values["retrievals"] == [] and values["draft"] == ""
    assert values["answer_mode"] == "generated" and values["question"] == "thanks, and something else"
