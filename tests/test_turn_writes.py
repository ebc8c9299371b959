"""A turn writes what it changes: the keys a turn resets are written only
when they hold something to reset, so a plain conversation's turn does not
store a dozen empty lists and nulls again and again."""

from __future__ import annotations

import asyncio
import uuid

from langchain_core.messages import HumanMessage

from appliance.agent.rag_nodes import changed
from tests.support.turns import new_thread, turn

# Reset by every turn; a plain answer (``respond``) sets none of them.
RESET_KEYS = {"passages", "relevant", "retrievals", "citations", "evidence", "draft", "draft_usage", "tool_steps"}


async def plan_writes(runtime, thread_id: str) -> list[set[str]]:
    """The channels ``plan`` wrote, turn by turn."""
    async with runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT checkpoint_id, array_agg(channel) AS channels FROM checkpoint_writes
                   WHERE thread_id = %s AND task_path LIKE '%%plan%%' GROUP BY checkpoint_id ORDER BY checkpoint_id""",
                (thread_id,),
            )
        ).fetchall()
    return [set(row["channels"]) for row in rows]


async def test_a_turn_rewrites_only_the_keys_it_changes_and_the_values_keep_every_key(scripted_app):
    tid = await new_thread(scripted_app.client)
    first = await turn(scripted_app.client, tid, "hello there")
    second = await turn(scripted_app.client, tid, "what can you do?")

    first_writes, second_writes = await plan_writes(scripted_app.runtime, tid)
    assert RESET_KEYS <= first_writes  # a new thread gets every key
    # The second turn's question is new, and the first answer's mode is reset;
    # everything else it resets was already reset.
    assert not RESET_KEYS & second_writes, second_writes
    assert {"question", "query", "answer_mode"} <= second_writes
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
