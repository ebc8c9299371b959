"""What LangGraph itself costs a turn, with and without the appliance's saver:
the floor under any turn of the agent, apart from HTTP, the run's bookkeeping
and the model.

Graphs of 1, 2 and 3 nodes over the agent's state (the last node answers
with one message, the others write nothing), --turns turns each, every turn a
new conversation on a thread of its own (as each of bench.stream_load's turns
is): compiled without a checkpointer (LangGraph's step machinery alone), and
with the appliance's saver at durability="sync", once as a bare graph.ainvoke
stores a turn (a statement a step's writes) and once as a run does (each
step's writes in the next checkpoint's statement, and the input checkpoint
with the one after START's step waiting for the next: a statement for a plain
turn's three checkpoints); and as a run did before 2026-12-07, each
checkpoint stored as LangGraph puts it. The blocks alternate, --rounds times.
Printed: the CPU a turn of each (this process's, the saver's PostgreSQL
client included), and for the saver's modes PostgreSQL's own (its processes
on this host, from /proc), what checkpointing adds, and what one more node
(one more super-step, and its checkpoint) adds. A checkpointed turn of n nodes writes n + 2
checkpoints: the input's, the ``__start__`` step's and one a node. The agent's
plain turn is a turn of one node (``respond``).

Then the agent's own graph, a plain turn (no knowledge bases, no tools) of a
new conversation at durability="sync", as built (``START`` straight to
``respond``) against the same graph with ``START`` sending plain turns
through ``plan`` (as before 2026-12-06), blocks alternating: their CPU a turn
and its ratio.

    python -m bench.step_cost [--turns 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

import appliance.agent.graph as agent_graph
from appliance.agent.context import built_in_context
from appliance.agent.state import AgentState
from appliance.store.checkpointer import Waiting
from bench.common import WARM_UP_TURNS, bench_settings, instant_model, postgres_cpu_seconds, timed
from tests.support.app import serve_app

NODES = (1, 2, 3)


def chain(nodes: int, saver):
    graph = StateGraph(AgentState)
    before = START
    for i in range(nodes):
        last = i == nodes - 1
        graph.add_node(f"node{i}", (lambda state: {"messages": [AIMessage("ok")]}) if last else (lambda state: {}))
        graph.add_edge(before, f"node{i}")
        before = f"node{i}"
    graph.add_edge(before, END)
    return graph.compile(checkpointer=saver)


def agent(runtime, *, plain_turns_via_plan: bool):
    """The agent's graph as the runtime builds it, without the tool loop and
    the archive (a plain turn of a new conversation uses neither)."""
    after_start = agent_graph.after_start

    def via_plan(*args, **kwargs):
        route = after_start(*args, **kwargs)
        return lambda state: "plan" if route(state) == "respond" else route(state)

    agent_graph.after_start = via_plan if plain_turns_via_plan else after_start
    try:
        return agent_graph.build_graph(
            runtime.models,
            runtime.policy,
            runtime.checkpointer,
            defaults=built_in_context(runtime.settings),
            retriever=runtime.knowledge.retriever,
        )
    finally:
        agent_graph.after_start = after_start


@contextmanager
def each_checkpoint_at_once() -> Iterator[None]:
    """A run's saver as it was before 2026-12-07: no checkpoint waits for the
    next (each stored as LangGraph puts it, with the writes of the step before it)."""
    may_wait = Waiting.may_wait
    Waiting.may_wait = lambda self, row: False
    try:
        yield
    finally:
        Waiting.may_wait = may_wait


async def timed_with_postgres(turns: int, turn) -> tuple[float, float | None]:
    """``timed``'s CPU a turn (this process's, ms), and PostgreSQL's (ms; None when it runs elsewhere)."""
    before = postgres_cpu_seconds()
    _, spent = await timed(turns, turn)
    after = postgres_cpu_seconds()
    server = None if before is None or after is None else (after - before) / (turns + WARM_UP_TURNS) * 1000
    return spent * 1000, server


async def main(turns: int, rounds: int) -> None:
    said = {"messages": [("user", "hi")]}
    bare: dict[int, list[float]] = {n: [] for n in NODES}
    saved: dict[int, list[float]] = {n: [] for n in NODES}
    as_run: dict[int, list[float]] = {n: [] for n in NODES}
    at_once: dict[int, list[float]] = {n: [] for n in NODES}
    # PostgreSQL's CPU a turn of the saver's modes, by mode and nodes.
    postgres: dict[str, dict[int, list[float]]] = {
        mode: {n: [] for n in NODES} for mode in ("saved", "as_run", "at_once")
    }
    plain: dict[str, list[float]] = {"straight to respond": [], "through plan": []}
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            saver = app.runtime.graph.checkpointer
            for _ in range(rounds):
                for nodes in NODES:
                    graph = chain(nodes, None)
                    _, spent = await timed(turns, lambda graph=graph: graph.ainvoke(said))
                    bare[nodes].append(spent * 1000)

                    graph = chain(nodes, saver)

                    def new_conversation(graph=graph):
                        thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
                        return graph.ainvoke(said, thread, durability="sync")

                    spent, server = await timed_with_postgres(turns, new_conversation)
                    saved[nodes].append(spent)
                    postgres["saved"][nodes].append(server)

                    async def as_a_run(new_conversation=new_conversation):
                        async with saver.writes_with_next_checkpoint():
                            await new_conversation()

                    spent, server = await timed_with_postgres(turns, as_a_run)
                    as_run[nodes].append(spent)
                    postgres["as_run"][nodes].append(server)
                    with each_checkpoint_at_once():
                        spent, server = await timed_with_postgres(turns, as_a_run)
                    at_once[nodes].append(spent)
                    postgres["at_once"][nodes].append(server)
            agents = {"straight to respond": agent(app.runtime, plain_turns_via_plan=False)}
            agents["through plan"] = agent(app.runtime, plain_turns_via_plan=True)
            for _ in range(rounds):
                for name, graph in agents.items():

                    def plain_turn(graph=graph):
                        thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
                        return graph.ainvoke(said, thread, durability="sync")

                    _, spent = await timed(turns, plain_turn)
                    plain[name].append(spent * 1000)

    def mean(figures: dict[int, list[float]], nodes: int) -> float:
        return statistics.fmean(figures[nodes])

    modes = (
        ("no checkpointer", bare, None),
        ('the saver, durability="sync"', saved, "saved"),
        ("the saver as a run", as_run, "as_run"),
        ("as a run, each at once", at_once, "at_once"),
    )
    for name, figures, mode in modes:
        for nodes in NODES:
            runs = "  ".join(f"{f:.2f}" for f in figures[nodes])
            line = f"{name:<30} {nodes} node(s): CPU a turn {runs} ms (mean {mean(figures, nodes):.2f} ms)"
            if mode and None not in postgres[mode][nodes]:
                line += f"; PostgreSQL's {statistics.fmean(postgres[mode][nodes]):.2f} ms"
            print(line)
    first, last = NODES[0], NODES[-1]
    for name, figures, _ in modes:
        step = (mean(figures, last) - mean(figures, first)) / (last - first)
        print(f"{name}: one more node adds {step:.2f} ms a turn")
    for nodes in NODES:
        print(
            f"checkpointing adds {mean(saved, nodes) - mean(bare, nodes):.2f} ms to a turn of {nodes} node(s), "
            f"{mean(as_run, nodes) - mean(bare, nodes):.2f} ms as a run"
        )
    for nodes in NODES:
        ratio = f"{mean(as_run, nodes) / mean(at_once, nodes):.2f}x this process's CPU"
        if None not in postgres["as_run"][nodes] + postgres["at_once"][nodes]:
            waited, stored = (statistics.fmean(postgres[mode][nodes]) for mode in ("as_run", "at_once"))
            ratio += f", {waited / stored:.2f}x PostgreSQL's"
        print(f"a run's checkpoints waiting for the next, {nodes} node(s): {ratio} (against each stored at once)")
    for name, figures in plain.items():
        runs = "  ".join(f"{f:.2f}" for f in figures)
        print(f"the agent's plain turn, {name:<20}: CPU a turn {runs} ms (mean {statistics.fmean(figures):.2f} ms)")
    straight, through = (statistics.fmean(plain[name]) for name in ("straight to respond", "through plan"))
    print(f"the agent's plain turn straight to respond: {straight / through:.2f}x the CPU of one through plan")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
