"""The agent's graph, assembled in one place.

    START ─▶ over budget? ─yes─▶ fold_history ─▶ plan
                         └─no─────────────────▶ plan

    plan ─▶ small talk? ─yes─▶ respond ─▶ END
                        └─no──▶ retrieve ─▶ grade

    grade ─▶ any passage answers? ─yes─────────────────▶ generate ─▶ verify ─▶ END
                                  └─no, tries left─▶ rewrite ─▶ retrieve
                                  └─no, none left──▶ refuse ─▶ END

``verify`` keeps the model's draft when its sources support it, else answers
with the sources' own sentences, quoted.

Without a retriever (or with no knowledge bases on the run) ``plan`` always
routes to ``respond``: a plain conversation with bounded memory.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from appliance.agent.evidence import EvidenceJudge
from appliance.agent.memory import MemoryPolicy
from appliance.agent.nodes import make_fold_history, make_respond, needs_fold
from appliance.agent.rag_nodes import (
    after_grade,
    after_plan,
    make_generate,
    make_grade,
    make_plan,
    make_retrieve,
    make_rewrite,
    make_verify,
    refuse,
)
from appliance.agent.state import AgentState
from appliance.knowledge.retrieval import Retriever
from appliance.llm.errors import ModelBusy, ModelUnavailable
from appliance.llm.provider import LanguageModel

GRAPH_ID = "agent"
# The graph's nodes, as clients name them (interrupt_before, command.goto, as_node).
NODES = ("fold_history", "plan", "respond", "retrieve", "grade", "rewrite", "generate", "verify", "refuse")

# A busy or unreachable model often recovers in seconds; anything else is final.
MODEL_RETRY = RetryPolicy(
    initial_interval=0.5,
    max_attempts=3,
    retry_on=lambda exc: isinstance(exc, (ModelBusy, ModelUnavailable)),
)


def build_graph(
    model: LanguageModel,
    policy: MemoryPolicy,
    checkpointer: BaseCheckpointSaver | None,
    *,
    retriever: Retriever | None = None,
    retrieval_k: int = 4,
    max_retrievals: int = 2,
) -> CompiledStateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("fold_history", make_fold_history(model, policy), retry_policy=MODEL_RETRY)
    graph.add_node("plan", make_plan(retriever))
    graph.add_node("respond", make_respond(model, policy), retry_policy=MODEL_RETRY)
    graph.add_conditional_edges(START, needs_fold(policy), {"fold_history": "fold_history", "plan": "plan"})
    graph.add_edge("fold_history", "plan")
    graph.add_edge("respond", END)
    if retriever is None:
        graph.add_edge("plan", "respond")
        return graph.compile(checkpointer=checkpointer, name=GRAPH_ID)

    judge = EvidenceJudge(retriever.embedder)
    graph.add_node("retrieve", make_retrieve(retriever, retrieval_k))
    graph.add_node("grade", make_grade(model, judge, retrieval_k), retry_policy=MODEL_RETRY)
    graph.add_node("rewrite", make_rewrite(model, retriever), retry_policy=MODEL_RETRY)
    graph.add_node("generate", make_generate(model, policy), retry_policy=MODEL_RETRY)
    graph.add_node("verify", make_verify(model, judge))
    graph.add_node("refuse", refuse)
    graph.add_conditional_edges("plan", after_plan, {"respond": "respond", "retrieve": "retrieve"})
    graph.add_edge("retrieve", "grade")
    graph.add_conditional_edges(
        "grade", after_grade(max_retrievals), {"generate": "generate", "rewrite": "rewrite", "refuse": "refuse"}
    )
    graph.add_edge("rewrite", "retrieve")
    graph.add_edge("generate", "verify")
    graph.add_edge("verify", END)
    graph.add_edge("refuse", END)
    return graph.compile(checkpointer=checkpointer, name=GRAPH_ID)


def memory_policy(settings, model: LanguageModel) -> MemoryPolicy:
    return MemoryPolicy(
        system_prompt=settings.system_prompt,
        token_budget=settings.context_token_budget,
        fold_target=settings.fold_target,
        summary_max_tokens=settings.summary_max_tokens,
        count_tokens=model.count_tokens,
    )
