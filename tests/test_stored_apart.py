"""A value that stays the same over many turns (the memory's summary) is
stored once per version, as a blob, not inline in every checkpoint; a thread
written while it was inline still reads it, and keeps it, after the change."""

from __future__ import annotations

import uuid
from typing import Annotated

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from appliance.agent.messages import merge_messages
from appliance.store.checkpointer import PooledPostgresSaver, thread_config

SUMMARY = "the user keeps bees and sells honey at the Saturday market " * 8


class State(TypedDict, total=False):
    messages: Annotated[list, merge_messages]
    summary: str


def answer(state: State) -> dict:
    turns = len(state.get("messages", []))
    update: dict = {"messages": [AIMessage(f"answer {turns}")]}
    if turns % 10 == 1:  # now and then, as a fold does
        update["summary"] = f"{SUMMARY}({turns})"
    return update


class CountingSaver(PooledPostgresSaver):
    """Counts the summary's blobs it sends (a value stored apart offered again)."""

    sent = 0

    def _dump_blobs(self, thread_id, checkpoint_ns, values, versions):
        self.sent += "summary" in versions
        return super()._dump_blobs(thread_id, checkpoint_ns, values, versions)


def build(saver: PooledPostgresSaver):
    builder = StateGraph(State)
    builder.add_node(answer)
    builder.add_edge(START, "answer")
    return builder.compile(checkpointer=saver)


async def stored(pool: AsyncConnectionPool, thread_id: str) -> tuple[int, int, int]:
    """Checkpoints holding the summary inline, blobs of it, and its distinct versions."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT count(*) FILTER (WHERE checkpoint -> 'channel_values' ? 'summary') AS inline,
                          count(DISTINCT checkpoint -> 'channel_versions' ->> 'summary') AS versions,
                          (SELECT count(*) FROM checkpoint_blobs b
                           WHERE b.thread_id = %(t)s AND b.channel = 'summary') AS blobs
                   FROM checkpoints WHERE thread_id = %(t)s""",
                {"t": thread_id},
            )
        ).fetchone()
    return row["inline"], row["blobs"], row["versions"]


async def turns(graph, config, first: int, last: int) -> None:
    for n in range(first, last):
        await graph.ainvoke({"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}, config)


async def test_a_value_stored_apart_is_written_once_a_version_and_reads_the_same(databases):
    pool = AsyncConnectionPool(databases.create(), kwargs={"autocommit": True, "row_factory": dict_row}, open=False)
    await pool.open()
    try:
        inline, apart = PooledPostgresSaver(pool), CountingSaver(pool)
        await inline.setup()
        apart.store_apart({"summary"})
        before, after = build(inline), build(apart)

        # Stored apart from the start: no checkpoint carries the text, one blob a version.
        config = thread_config(uuid.uuid4())
        await turns(after, config, 0, 30)
        held, blobs, versions = await stored(pool, config["configurable"]["thread_id"])
        assert held == 0 and versions == 6 and blobs == versions, (held, blobs, versions)
        # Sent once a version: a checkpoint whose summary is unchanged does not send it again.
        assert apart.sent == versions, apart.sent
        assert (await after.aget_state(config)).values["summary"] == f"{SUMMARY}(51)"
        assert (await before.aget_state(config)).values["summary"] == f"{SUMMARY}(51)"  # a saver storing inline

        # A thread written with the summary inline, then turns stored apart,
        # and a fork from a checkpoint before the change.
        config = thread_config(uuid.uuid4())
        await turns(before, config, 0, 17)
        old = (await inline.aget_tuple(config)).config
        held_before, _, _ = await stored(pool, config["configurable"]["thread_id"])
        apart.sent = 0
        await turns(after, config, 17, 20)  # the summary unchanged: its version has no blob yet
        assert (await after.aget_state(config)).values["summary"] == f"{SUMMARY}(31)"
        assert apart.sent == 1, apart.sent  # offered once, then known stored
        await turns(after, config, 20, 24)  # changed, then unchanged
        assert (await after.aget_state(config)).values["summary"] == f"{SUMMARY}(41)"
        forked = await after.aupdate_state(old, {"messages": [HumanMessage("a fork", id="fork")]}, as_node="answer")
        assert (await after.aget_state(forked)).values["summary"] == f"{SUMMARY}(31)"
        held_after, _, _ = await stored(pool, config["configurable"]["thread_id"])
        assert held_before > 0 and held_after == held_before  # no new checkpoint carries it inline
    finally:
        await pool.close()
