"""The agent's graph, assembled in one place.

START ──▶ over budget? ──yes──▶ fold_history ──▶ respond ──▶ END
                     └──no───────────────────────▲
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from appliance.agent.memory import MemoryPolicy
from appliance.agent.nodes import make_fold_history, make_respond, needs_fold
from appliance.agent.state import AgentState
from appliance.llm.errors import ModelBusy, ModelUnavailable
from appliance.llm.provider import LanguageModel

GRAPH_ID = "agent"

# A busy or unreachable model often recovers in seconds; anything else is final.
MODEL_RETRY = RetryPolicy(
    initial_interval=0.5,
    max_attempts=3,
    retry_on=lambda exc: isinstance(exc, (ModelBusy, ModelUnavailable)),
)


def build_graph(
    model: LanguageModel, policy: MemoryPolicy, checkpointer: BaseCheckpointSaver | None
) -> CompiledStateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("fold_history", make_fold_history(model, policy), retry_policy=MODEL_RETRY)
    graph.add_node("respond", make_respond(model, policy), retry_policy=MODEL_RETRY)
    graph.add_conditional_edges(START, needs_fold(policy), {"fold_history": "fold_history", "respond": "respond"})
    graph.add_edge("fold_history", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer, name=GRAPH_ID)


def memory_policy(settings, model: LanguageModel) -> MemoryPolicy:
    return MemoryPolicy(
        system_prompt=settings.system_prompt,
        token_budget=settings.context_token_budget,
        fold_target=settings.fold_target,
        summary_max_tokens=settings.summary_max_tokens,
        count_tokens=model.count_tokens,
    )
