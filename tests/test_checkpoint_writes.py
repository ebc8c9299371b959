"""A checkpoint with its blobs, and a task's writes, go to PostgreSQL in one
statement each, as the same rows LangGraph's own saver writes."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import uuid
from collections import Counter
from typing import Annotated

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import ERROR, INTERRUPT, RESUME, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import START, StateGraph
from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from appliance.agent.messages import merge_messages
from appliance.store.checkpointer import CheckpointRow, PooledPostgresSaver, Waiting, WriteRows, thread_config


class State(TypedDict):
    messages: Annotated[list, DeltaChannel(merge_messages, snapshot_frequency=2)]
    sources: list[str]
    turns: int


def answer(state: State) -> dict:
    return {"messages": [AIMessage("an answer")], "sources": ["a", "b"], "turns": state.get("turns", 0) + 1}


@pytest.fixture
async def pool(databases):
    connections = {"autocommit": True, "row_factory": dict_row}
    async with AsyncConnectionPool(databases.create(), kwargs=connections, open=False) as pool:
        await PooledPostgresSaver(pool).setup()
        yield pool


async def test_each_checkpoint_and_each_tasks_writes_is_one_statement_encoded_on_the_loop(pool, monkeypatch):
    saver = PooledPostgresSaver(pool)
    calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("calling", default=None)
    sent: Counter[str] = Counter()  # statements sent while a write method runs
    calls: Counter[str] = Counter()

    def counted(method):
        async def call(*args, **kwargs):
            calls[method.__name__] += 1
            token = calling.set(method.__name__)
            try:
                return await method(*args, **kwargs)
            finally:
                calling.reset(token)

        return call

    execute, executemany = AsyncCursor.execute, AsyncCursor.executemany

    async def counting_execute(self, query, params=None, **kwargs):
        if (name := calling.get()) is not None:
            sent[name] += 1
        return await execute(self, query, params, **kwargs)

    async def counting_executemany(self, query, params_seq, **kwargs):
        params_seq = list(params_seq)
        if (name := calling.get()) is not None:
            sent[name] += len(params_seq)  # one statement a row
        return await executemany(self, query, params_seq, **kwargs)

    monkeypatch.setattr(AsyncCursor, "execute", counting_execute)
    monkeypatch.setattr(AsyncCursor, "executemany", counting_executemany)
    monkeypatch.setattr(saver, "aput", counted(saver.aput))
    monkeypatch.setattr(saver, "aput_writes", counted(saver.aput_writes))
    encoded_on: set[int] = set()  # the threads that serialised the values

    def on_thread(dump):
        def call(*args):
            encoded_on.add(threading.get_ident())
            return dump(*args)

        return call

    monkeypatch.setattr(saver, "_dump_blobs", on_thread(saver._dump_blobs))
    monkeypatch.setattr(saver, "_dump_writes", on_thread(saver._dump_writes))

    builder = StateGraph(State)
    builder.add_node(answer)
    builder.add_edge(START, "answer")
    graph = builder.compile(checkpointer=saver)
    config = thread_config(uuid.uuid4())
    for n in range(3):  # the second turn stores a snapshot of the messages
        await graph.ainvoke({"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}, config, durability="sync")

    assert calls["aput"] >= 9 and calls["aput_writes"] >= 6
    assert sent == calls  # LangGraph's saver sends a statement for each blob and each write
    assert encoded_on == {threading.get_ident()}  # on the event loop, without a hop to a thread for each call
    values = (await graph.aget_state(config)).values
    assert [m.content for m in values["messages"]][-2:] == ["question 2", "an answer"]
    assert values["sources"] == ["a", "b"] and values["turns"] == 3


async def rows(pool, thread_id: str) -> dict[str, list[tuple]]:
    queries = {
        "checkpoints": "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata "
        "FROM checkpoints WHERE thread_id = %s ORDER BY 1, 2",
        "blobs": "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = %s "
        "ORDER BY 1, 2, 3",
        "writes": "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob "
        "FROM checkpoint_writes WHERE thread_id = %s ORDER BY 1, 2, 3, 5",
    }
    found = {}
    async with pool.connection() as conn:
        for table, query in queries.items():
            found[table] = [tuple(row.values()) for row in await (await conn.execute(query, (thread_id,))).fetchall()]
    return found


def sample() -> tuple[dict, dict, dict, dict]:
    """A checkpoint of every kind of value, its versions and metadata, and tasks' writes of every kind."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {
        "messages": _DeltaSnapshot([HumanMessage("hello", id="h1")]),
        "sources": ["a", "b"],
        "context": {"k": [1, 2]},
        "turns": 3,
        "name": "x",
        "draft": None,
    }
    versions = {channel: f"{1:032}.{n:016}" for n, channel in enumerate(checkpoint["channel_values"])}
    checkpoint["channel_versions"] = versions
    metadata = {"source": "loop", "step": 1, "run_id": "r1"}
    writes = {
        "task-normal": [("messages", [AIMessage("hi", id="a1")]), ("sources", []), ("turns", 4)],
        "task-special": [(INTERRUPT, ["first"]), (RESUME, "yes"), (INTERRUPT, ["second"])],  # the last kept
        "task-mixed": [(ERROR, "boom"), ("turns", 5), (ERROR, "again")],  # the first kept
    }
    return checkpoint, versions, metadata, writes


async def test_the_rows_are_those_langgraphs_saver_writes(pool):
    checkpoint, versions, metadata, writes = sample()
    unchanged = {**checkpoint, "id": str(uuid.uuid4())}
    written = {}
    for saver in (PooledPostgresSaver(pool), AsyncPostgresSaver(pool)):
        thread_id = str(uuid.uuid4())
        parent = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": "parent-1"}}
        config = await saver.aput(parent, checkpoint, metadata, versions)
        assert config["configurable"] == parent["configurable"] | {"checkpoint_id": checkpoint["id"]}
        await saver.aput(config, unchanged, metadata, {})  # nothing new to store: no blob rows
        for task_id, task_writes in writes.items():
            await saver.aput_writes(config, task_writes, task_id, task_path="~path")
        await saver.aput_writes(config, [], "task-empty")
        written[type(saver).__name__] = await rows(pool, thread_id)
        tuple_ = await saver.aget_tuple(config)
        assert tuple_.checkpoint["channel_values"]["sources"] == ["a", "b"]
        assert tuple_.checkpoint["channel_values"]["turns"] == 3

    ours, langgraphs = written["PooledPostgresSaver"], written["AsyncPostgresSaver"]
    assert len(ours["blobs"]) == 3 and len(ours["writes"]) == 7
    assert ours == langgraphs


@pytest.mark.parametrize("ending", ["ends", "fails"])
async def test_within_a_run_a_steps_writes_go_into_the_next_checkpoints_statement(pool, monkeypatch, ending):
    """The same rows as LangGraph's saver, one statement fewer a step; the
    writes no checkpoint followed are stored on the way out, however the run ends."""
    checkpoint, versions, metadata, writes = sample()
    following = {**checkpoint, "id": str(uuid.uuid4())}
    statements: Counter[str] = Counter()
    execute = AsyncCursor.execute

    async def counting(self, query, params=None, **kwargs):
        statements["writes" if "checkpoints" not in str(query) else "checkpoint"] += 1
        return await execute(self, query, params, **kwargs)

    async def turn(saver) -> str:
        thread_id = str(uuid.uuid4())
        parent = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": "parent-1"}}
        config = await saver.aput(parent, checkpoint, metadata, versions)
        for task_id, task_writes in writes.items():
            await saver.aput_writes(config, task_writes, task_id, task_path="~path")
        last = await saver.aput(config, following, metadata, {})
        await saver.aput_writes(last, [(INTERRUPT, ["paused"])], "task-paused")  # no checkpoint follows
        await saver.aput_writes(last, [("turns", 6)], "task-paused")
        return thread_id

    langgraphs = await rows(pool, await turn(AsyncPostgresSaver(pool)))
    saver = PooledPostgresSaver(pool)
    monkeypatch.setattr(AsyncCursor, "execute", counting)
    with contextlib.suppress(RuntimeError):
        async with saver.writes_with_next_checkpoint():
            thread_id = await turn(saver)
            if ending == "fails":
                raise RuntimeError("the run failed after its last step")
    monkeypatch.undo()
    assert await rows(pool, thread_id) == langgraphs
    assert len(langgraphs["writes"]) == 9
    # Two checkpoints, the first step's writes in the second's statement, the last step's on the way out.
    assert statements == {"checkpoint": 2, "writes": 1}


def graph_of(saver, **compiled):
    builder = StateGraph(State)
    builder.add_node(answer)
    builder.add_edge(START, "answer")
    return builder.compile(checkpointer=saver, **compiled)


async def history(graph, config) -> list[tuple]:
    """The thread's checkpoints as LangGraph lists them, newest first, without their ids."""
    return [
        (s.metadata["source"], s.metadata["step"], s.next, [m.content for m in s.values.get("messages", [])])
        async for s in graph.aget_state_history(config)
    ]


async def test_within_a_run_a_plain_turns_three_checkpoints_are_one_statement(pool, monkeypatch):
    """The input checkpoint, and the one after START's step, wait for the
    checkpoint of the turn's node: one statement a turn where there were three,
    and the same history as LangGraph's saver gives."""
    statements: list[str] = []
    execute = AsyncCursor.execute

    async def recording(self, query, params=None, **kwargs):
        statements.append(str(query))
        return await execute(self, query, params, **kwargs)

    theirs, ours = thread_config(uuid.uuid4()), thread_config(uuid.uuid4())
    langgraphs, saver = graph_of(AsyncPostgresSaver(pool)), PooledPostgresSaver(pool)
    graph = graph_of(saver)
    for n in range(3):
        said = {"messages": [HumanMessage(f"question {n}", id=f"q{n}")]}
        await langgraphs.ainvoke(said, theirs, durability="sync")
        monkeypatch.setattr(AsyncCursor, "execute", recording)
        async with saver.writes_with_next_checkpoint():
            await graph.ainvoke(said, ours, durability="sync")
        monkeypatch.undo()
    stores = [s for s in statements if "INSERT INTO checkpoints" in s]
    assert len(stores) == 3  # a statement a turn
    assert all(s.count("INSERT INTO checkpoints") == 3 for s in stores)
    assert await history(graph, ours) == await history(langgraphs, theirs)
    assert len(await history(graph, ours)) == 9


async def test_a_checkpoint_that_waited_is_stored_when_the_run_ends_without_another(pool):
    """Paused before its node, a turn ends at the checkpoint after START's
    step: it and the input checkpoint are stored on the way out."""
    theirs, ours = thread_config(uuid.uuid4()), thread_config(uuid.uuid4())
    langgraphs = graph_of(AsyncPostgresSaver(pool), interrupt_before=["answer"])
    saver = PooledPostgresSaver(pool)
    graph = graph_of(saver, interrupt_before=["answer"])
    said = {"messages": [HumanMessage("question", id="q")]}
    await langgraphs.ainvoke(said, theirs, durability="sync")
    async with saver.writes_with_next_checkpoint():
        await graph.ainvoke(said, ours, durability="sync")
    assert (await graph.aget_state(ours)).next == ("answer",)
    assert await history(graph, ours) == await history(langgraphs, theirs)


def two_steps(saver):
    builder = StateGraph(State)
    builder.add_node(answer)
    builder.add_node("again", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "again")
    return builder.compile(checkpointer=saver)


async def test_a_runs_last_checkpoint_waits_for_its_end_and_goes_in_its_transaction(pool):
    """Only the last: the checkpoint after a step that started another is
    stored before that one runs. The last goes, with the statements of the
    run's end, in the transaction that records it."""
    theirs, ours = thread_config(uuid.uuid4()), thread_config(uuid.uuid4())
    langgraphs, saver = two_steps(AsyncPostgresSaver(pool)), PooledPostgresSaver(pool)
    graph = two_steps(saver)
    said = {"messages": [HumanMessage("question", id="q")]}
    await langgraphs.ainvoke(said, theirs, durability="sync")
    async with saver.writes_with_next_checkpoint(until_end=graph.trigger_to_nodes) as waiting:
        await graph.ainvoke(said, ours, durability="sync")
    assert [entry[:2] for entry in await history(graph, ours)] == [("loop", 1), ("loop", 0), ("input", -1)]

    statements = saver.end_statements(waiting)
    async with pool.connection() as conn, conn.transaction():
        for statement, params in statements:
            await conn.execute(statement, params)
        # The run's end would be recorded here.
    saver.end_committed(waiting)
    assert len(statements) == 1
    assert await history(graph, ours) == await history(langgraphs, theirs)
    assert (await graph.aget_state(ours)).values["turns"] == 2


def waiting_row(checkpoint_id: str, parent_id: str | None, source: str) -> CheckpointRow:
    return CheckpointRow("t", "", checkpoint_id, parent_id, Jsonb({}), Jsonb({}), [], {}, source)


def writes_by(task_path: str, checkpoint_id: str) -> WriteRows:
    return [("t", "", checkpoint_id, "task", task_path, 0, "messages", "msgpack", b"")], False


def test_only_the_input_and_the_step_that_mapped_it_wait():
    """A checkpoint after a step that ran any node but START's (a node that
    may call a tool) is stored before the next step runs."""
    waiting = Waiting()
    assert waiting.may_wait(waiting_row("c1", "c0", "input"))
    assert not waiting.may_wait(waiting_row("c1", "c0", "loop"))  # nothing waits before it
    waiting.checkpoints[("t", "")] = [waiting_row("c1", "c0", "input")]
    assert not waiting.may_wait(waiting_row("c2", "c1", "loop"))  # START's writes not heard yet
    waiting.writes[("t", "", "c1")] = [writes_by("~__pregel_pull, __start__", "c1")]
    assert waiting.may_wait(waiting_row("c2", "c1", "loop"))
    assert not waiting.may_wait(waiting_row("c2", "other", "loop"))  # not the input's child
    waiting.writes[("t", "", "c1")].append(writes_by("~__pregel_pull, answer", "c1"))
    assert not waiting.may_wait(waiting_row("c2", "c1", "loop"))
    waiting.checkpoints[("t", "")].append(waiting_row("c2", "c1", "loop"))
    assert not waiting.may_wait(waiting_row("c3", "c2", "loop"))  # after a node's step: stored
