"""What LangGraph itself costs a turn, with the appliance's saver: the floor
under any turn of the agent, apart from HTTP, the run's bookkeeping and the model.

Graphs of 1, 2 and 3 nodes over the agent's state (the last node answers
with one message, the others write nothing), each run --turns turns on its own
thread with durability="sync", as a run checkpoints; the blocks alternate,
--rounds times. Printed: the CPU a turn of each (this process's, the saver's
PostgreSQL client included; the server's own CPU is not), the mean, and what
one more node (one more super-step and its checkpoint) adds. A turn of n nodes
writes n + 2 checkpoints: the input's, the ``__start__`` step's and one a node.
The agent's plain turn is a turn of two nodes (``plan`` and ``respond``).

    python -m bench.step_cost [--turns 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from functools import partial

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

from appliance.agent.state import AgentState
from bench.common import bench_settings, instant_model, timed
from tests.support.app import serve_app


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


async def main(turns: int, rounds: int) -> None:
    cpu: dict[int, list[float]] = {1: [], 2: [], 3: []}
    said = {"messages": [("user", "hi")]}
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            saver = app.runtime.graph.checkpointer
            for _ in range(rounds):
                for nodes in cpu:
                    graph = chain(nodes, saver)
                    thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
                    _, spent = await timed(turns, partial(graph.ainvoke, said, thread, durability="sync"))
                    cpu[nodes].append(spent * 1000)
    for nodes, figures in cpu.items():
        runs = "  ".join(f"{f:.2f}" for f in figures)
        print(f"{nodes} node(s): CPU a turn {runs} ms (mean {statistics.fmean(figures):.2f} ms)")
    one, three = statistics.fmean(cpu[1]), statistics.fmean(cpu[3])
    print(f"one more node adds {(three - one) / 2:.2f} ms a turn; three nodes cost {three / one:.2f}x one")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
