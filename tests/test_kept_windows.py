"""A process keeps the conversation windows it rebuilds (store/windows.py): the
next read of a thread replays only what was written since, and reads the same
state as a process that keeps nothing, whoever wrote the turns in between,
on forks and old checkpoints alike. A run's final state is kept likewise."""

from __future__ import annotations

import itertools
import uuid
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from appliance.agent.messages import merge_messages
from appliance.store.checkpointer import PooledPostgresSaver, thread_config
from appliance.store.serde import CheckpointSerializer

SNAPSHOT_EVERY = 7


class State(TypedDict):
    messages: Annotated[list, DeltaChannel(merge_messages, snapshot_frequency=SNAPSHOT_EVERY)]


def answer(state: State) -> dict:
    return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}


def build(saver: PooledPostgresSaver, *, keep: bool):
    builder = StateGraph(State)
    builder.add_node(answer)
    builder.add_edge(START, "answer")
    graph = builder.compile(checkpointer=saver)
    if keep:
        saver.keep_windows(graph.channels)
    return graph


class CountingSerializer(CheckpointSerializer):
    """Counts the messages it decodes: a window's snapshot counts each of its messages."""

    decoded = 0

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        value = super().loads_typed(data)
        inner = value.value if isinstance(value, _DeltaSnapshot) else value
        self.decoded += len(inner) if isinstance(inner, list) else 1
        return value


def shown(state) -> list[tuple[str, str, str]]:
    return [(m.id, m.type, m.text) for m in state.values["messages"]]


async def open_pool(databases) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(databases.create(), kwargs={"autocommit": True, "row_factory": dict_row}, open=False)
    await pool.open()
    return pool


async def test_a_read_after_a_turn_decodes_only_that_turns_messages(databases):
    pool = await open_pool(databases)
    try:
        serde = CountingSerializer()
        saver = PooledPostgresSaver(pool, serde=serde)
        await saver.setup()
        graph = build(saver, keep=True)
        config = thread_config(uuid.uuid4())
        for n in range(30):
            await graph.ainvoke({"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}, config)

        # Another process (nothing kept) decodes the window from its last snapshot on.
        other = PooledPostgresSaver(pool, serde=CountingSerializer())
        cold = await build(other, keep=False).aget_state(config)
        assert other.serde.decoded >= SNAPSHOT_EVERY * 2

        serde.decoded = 0
        await graph.ainvoke({"messages": [HumanMessage("one more", id="q30")]}, config)
        turn = serde.decoded  # the turn's own read: only the writes of the turn before
        serde.decoded = 0
        warm = await graph.aget_state(config)
        assert shown(warm)[:-2] == shown(cold)
        assert len(shown(warm)) == 62
        assert turn <= 4, turn
        assert serde.decoded <= 4, serde.decoded
    finally:
        await pool.close()


async def test_kept_windows_read_what_a_process_keeping_nothing_reads(databases):
    pool = await open_pool(databases)
    try:
        # Two processes that keep windows and write the same thread in turn, and one that keeps nothing.
        first, second, reference = PooledPostgresSaver(pool), PooledPostgresSaver(pool), PooledPostgresSaver(pool)
        await first.setup()
        writers = [build(first, keep=True), build(second, keep=True)]
        plain = build(reference, keep=False)
        config = thread_config(uuid.uuid4())
        order = itertools.cycle([0, 0, 1, 0, 1, 1, 1])
        marks = []
        for n in range(24):
            graph = writers[next(order)]
            await graph.ainvoke({"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}, config)
            if n == 10:  # a message removed, as the memory policy does when it folds
                await graph.aupdate_state(config, {"messages": [RemoveMessage(id="q3")]}, as_node="answer")
            marks.append((await reference.aget_tuple(config)).config)
            expected = shown(await plain.aget_state(config))
            for each in writers:
                assert shown(await each.aget_state(config)) == expected

        # Old checkpoints, and a fork from one of them, read alike.
        for mark in (marks[2], marks[9], marks[15]):
            expected = shown(await plain.aget_state(mark))
            for each in writers:
                assert shown(await each.aget_state(mark)) == expected
        forked = await writers[0].aupdate_state(
            marks[9], {"messages": [HumanMessage("another way", id="fork")]}, as_node="answer"
        )
        for n in range(5):
            await writers[n % 2].ainvoke({"messages": [HumanMessage(f"fork {n}", id=f"f{n}")]}, forked)
            forked = (await reference.aget_tuple(config)).config
            expected = shown(await plain.aget_state(config))
            assert [m for m in expected if m[0] == "fork"] and not [m for m in expected if m[0] == "q20"]
            for each in writers:
                assert shown(await each.aget_state(config)) == expected

        # What a caller does to the list it was given does not reach the kept window.
        state = await writers[0].aget_state(config)
        state.values["messages"].clear()
        assert shown(await writers[0].aget_state(config)) == shown(await plain.aget_state(config))
    finally:
        await pool.close()


async def as_a_run(graph, saver: PooledPostgresSaver, value, config) -> None:
    """A turn as the run engine takes it: its writes with the next checkpoint, its final state told."""
    async with saver.writes_with_next_checkpoint() as stored:
        values = None
        async for chunk in graph.astream(value, config, stream_mode="values"):
            values = chunk
        stored.ended_with(values)


async def test_a_runs_final_state_is_the_window_its_threads_next_turn_starts_from(databases):
    """A run's last "values" are kept as the window of its last checkpoint: the
    thread's next turn in that process reads none of its conversation back, and
    every process still reads what one keeping nothing reads."""
    pool = await open_pool(databases)
    try:
        serde = CountingSerializer()
        first, second = PooledPostgresSaver(pool, serde=serde), PooledPostgresSaver(pool)
        reference = PooledPostgresSaver(pool)
        await first.setup()
        savers, writers = [first, second], [build(first, keep=True), build(second, keep=True)]
        plain = build(reference, keep=False)
        config = thread_config(uuid.uuid4())
        order = itertools.cycle([0, 0, 1, 0, 1, 1, 1])
        marks, previous, read_back = [], None, []
        for n in range(20):
            which = next(order)
            serde.decoded = 0
            await as_a_run(writers[which], savers[which], {"messages": [HumanMessage(f"q {n}", id=f"q{n}")]}, config)
            if which == 0:  # what its read decoded, after a turn of its own or of the other process
                read_back.append((previous == 0, serde.decoded))
            previous = which
            if n == 8:  # a message removed, as the memory policy does when it folds
                await writers[1].aupdate_state(config, {"messages": [RemoveMessage(id="q3")]}, as_node="answer")
                previous = 1
            marks.append((await reference.aget_tuple(config)).config)
        assert [decoded for own, decoded in read_back if own] == [0, 0, 0]
        assert all(decoded > 0 for own, decoded in read_back[1:] if not own)  # the other's turn is read back

        expected = shown(await plain.aget_state(config))
        assert "q3" not in [m[0] for m in expected] and len(expected) == 39
        for each in writers:
            assert shown(await each.aget_state(config)) == expected
        # A run from an old checkpoint (a fork) ends where it should, and is read alike.
        await as_a_run(writers[0], first, {"messages": [HumanMessage("another way", id="fork")]}, marks[5])
        expected = shown(await plain.aget_state(config))
        assert expected[-2][0] == "fork" and "q6" not in [m[0] for m in expected]
        for each in writers:
            assert shown(await each.aget_state(config)) == expected
    finally:
        await pool.close()
