"""What LangGraph itself costs a turn, with and without the appliance's saver:
the floor under any turn of the agent, apart from HTTP, the run's bookkeeping
and the model.

Graphs of 1, 2 and 3 nodes over the agent's state (the last node answers
with one message, the others write nothing), --turns turns each, every turn a
new conversation on a thread of its own (as each of bench.stream_load's turns
is): compiled without a checkpointer (LangGraph's step machinery alone), and
with the appliance's saver at durability="sync", once as a bare graph.ainvoke
stores a turn (a statement a step's writes) and once as a run does (each
step's writes in the next checkpoint's statement). The blocks alternate,
--rounds times. Printed: the CPU a turn of each (this
process's, the saver's PostgreSQL client included; the server's own CPU is
not), what checkpointing adds, and what one more node (one more super-step,
and its checkpoint) adds. A checkpointed turn of n nodes writes n + 2
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

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

import appliance.agent.graph as agent_graph
from appliance.agent.context import built_in_context
from appliance.agent.state import AgentState
from bench.common import bench_settings, instant_model, timed
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


async def main(turns: int, rounds: int) -> None:
    said = {"messages": [("user", "hi")]}
    bare: dict[int, list[float]] = {n: [] for n in NODES}
    saved: dict[int, list[float]] = {n: [] for n in NODES}
    as_run: dict[int, list[float]] = {n: [] for n in NODES}
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

                    _, spent = await timed(turns, new_conversation)
                    saved[nodes].append(spent * 1000)

                    async def as_a_run(new_conversation=new_conversation):
                        async with saver.writes_with_next_checkpoint():
                            await new_conversation()

                    _, spent = await timed(turns, as_a_run)
                    as_run[nodes].append(spent * 1000)
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

    modes = (("no checkpointer", bare), ('the saver, durability="sync"', saved), ("the saver as a run", as_run))
    for name, figures in modes:
        for nodes in NODES:
            runs = "  ".join(f"{f:.2f}" for f in figures[nodes])
            print(f"{name:<30} {nodes} node(s): CPU a turn {runs} ms (mean {mean(figures, nodes):.2f} ms)")
    first, last = NODES[0], NODES[-1]
    for name, figures in modes:
        step = (mean(figures, last) - mean(figures, first)) / (last - first)
        print(f"{name}: one more node adds {step:.2f} ms a turn")
    for nodes in NODES:
        print(
            f"checkpointing adds {mean(saved, nodes) - mean(bare, nodes):.2f} ms to a turn of {nodes} node(s), "
            f"{mean(as_run, nodes) - mean(bare, nodes):.2f} ms as a run"
        )
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
