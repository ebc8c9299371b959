"""Rebuilding a conversation's window reads what its own thread wrote since
the last snapshot, however much the rest of the database holds."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from appliance.agent.messages import merge_messages
from appliance.store.checkpointer import DELTA_PAGE, PooledPostgresSaver, _stage1_sql, thread_config


class State(TypedDict):
    messages: Annotated[list, DeltaChannel(merge_messages, snapshot_frequency=40)]


def answer(state: State) -> dict:
    return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}


def blob_rows_read(plan: dict) -> int:
    """Rows of checkpoint_blobs a plan's nodes read, kept or filtered out, over all their loops."""
    here = 0
    if plan.get("Relation Name") == "checkpoint_blobs":
        here = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
    return here + sum(blob_rows_read(child) for child in plan.get("Plans", []))


async def walk_reads(pool: AsyncConnectionPool, thread_id: str, checkpoint_id: str) -> int:
    params = ["messages"] * 4 + [thread_id, "", checkpoint_id, DELTA_PAGE]
    async with pool.connection() as conn:
        await conn.execute("ANALYZE")
        row = await (
            await conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {_stage1_sql(1, first_page=True)}", params)
        ).fetchone()
    plan = row["QUERY PLAN"]
    return blob_rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])


async def test_the_walk_to_the_last_snapshot_of_a_long_thread_reads_only_its_own_blobs(databases):
    connections = {"autocommit": True, "row_factory": dict_row}
    async with AsyncConnectionPool(databases.create(), kwargs=connections, open=False) as pool:
        saver = PooledPostgresSaver(pool)
        await saver.setup()
        builder = StateGraph(State)
        builder.add_node(answer)
        builder.add_edge(START, "answer")
        graph = builder.compile(checkpointer=saver)
        config = thread_config(uuid.uuid4())
        for n in range(30):
            await graph.ainvoke({"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}, config)
        latest = (await saver.aget_tuple(config)).config["configurable"]["checkpoint_id"]
        thread_id = config["configurable"]["thread_id"]

        async with pool.connection() as conn:
            # The thread's older checkpoints (a long conversation), and 30,000 stored windows of other threads.
            await conn.execute(
                """INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata)
                   SELECT %s, '', '00000000-0000-0000-0000-' || lpad(n::text, 12, '0'), '{}', '{}'
                   FROM generate_series(1, 5000) AS n""",
                (thread_id,),
            )
            await conn.execute(
                """INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
                   SELECT 'other-' || (n / 100), '', 'messages', lpad(n::text, 32, '0'), 'msgpack', '\\x90'
                   FROM generate_series(1, 30000) AS n"""
            )
        crowded = await walk_reads(pool, thread_id, latest)

        # A lookup per checkpoint of the page: LangGraph's own walk hashed all 30,000.
        assert crowded <= 2 * DELTA_PAGE
        assert len((await graph.aget_state(config)).values["messages"]) == 60
