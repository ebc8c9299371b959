"""The agent's graph, assembled in one place.

    START ─▶ over budget? ─yes─▶ fold_history ─┐
                         └─no──────────────────┴▶ anything to plan (tools, documents)? ─yes─▶ plan
                                                                                       └─no──▶ respond

    plan ─▶ tools (its own or the client's)? ─yes─▶ act ─▶ calls of its own? ─yes─▶ call_tools ─▶ act
         │                                                   └─only the client's, or none─▶ END
         │                (call_tools ─▶ END when the step also called the client's tools: handed back)
         └▶ small talk? ─yes─▶ respond ─▶ END
                        └─no──▶ retrieve ─▶ grade
            (documents_only: every message is searched for, and with no
             knowledge bases to search the answer is refuse)

    grade ─▶ any passage answers? ─yes─────────────────▶ generate ─▶ verify ─▶ END
                                  └─no, tries left─▶ rewrite ─▶ retrieve
                                  └─no, none left──▶ refuse ─▶ END

``verify`` keeps the model's draft when its sources support it, else answers
with the sources' own sentences, quoted.

Without a retriever (or with no knowledge bases on the run) and without tools,
a turn goes straight to ``respond``: a plain conversation with bounded memory.
What each node does is configured by the run's assistant: the graph's context
(``AssistantContext``).
An assistant with tools answers through the tool loop (``agent.tool_nodes``),
searching documents with the ``search_documents`` tool when it has it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from appliance.agent.configured import Configurator
from appliance.agent.context import AssistantContext
from appliance.agent.evidence import EvidenceJudge
from appliance.agent.memory import MemoryPolicy
from appliance.agent.nodes import make_fold_history, make_respond
from appliance.agent.rag_nodes import (
    after_grade,
    after_plan,
    after_start,
    first_step,
    make_generate,
    make_grade,
    make_plan,
    make_retrieve,
    make_rewrite,
    make_verify,
    refuse,
)
from appliance.agent.state import AgentState
from appliance.agent.tool_nodes import after_act, after_call_tools, make_act, make_call_tools
from appliance.knowledge.retrieval import Retriever
from appliance.llm.catalog import ModelCatalog
from appliance.llm.errors import ModelBusy, ModelUnavailable
from appliance.llm.provider import LanguageModel
from appliance.store.archive import MessageArchive
from appliance.tools.toolbox import Toolbox

GRAPH_ID = "agent"
# The graph's nodes, as clients name them (interrupt_before, command.goto, as_node).
NODES = (
    "fold_history", "plan", "respond", "retrieve", "grade", "rewrite", "generate", "verify", "refuse", "act",
    "call_tools",
)  # fmt: skip

# A busy or unreachable model often recovers in seconds; anything else is final.
MODEL_RETRY = RetryPolicy(
    initial_interval=0.5,
    max_attempts=3,
    retry_on=lambda exc: isinstance(exc, (ModelBusy, ModelUnavailable)),
)


def on_loop(route: Callable[[AgentState], str]) -> Callable[[AgentState], Awaitable[str]]:
    """An edge's decision, made on the event loop. LangGraph hands a plain
    function deciding an edge to a thread of its executor, a hop that costs
    more than these decisions from the state do."""

    async def decide(state: AgentState) -> str:
        return route(state)

    return decide


def build_graph(
    models: ModelCatalog,
    policy: MemoryPolicy,
    checkpointer: BaseCheckpointSaver | None,
    *,
    defaults: AssistantContext,
    retriever: Retriever | None = None,
    toolbox: Toolbox | None = None,
    archive: MessageArchive | None = None,
) -> CompiledStateGraph:
    """The agent. ``defaults`` is the built-in assistant's context, for a run given none;
    without a ``toolbox`` the graph has no tool loop; without an ``archive``
    folded turns stay in the state."""
    configure = Configurator(models, policy, defaults)
    graph = StateGraph(AgentState, context_schema=AssistantContext)
    graph.add_node("fold_history", make_fold_history(configure, archive), retry_policy=MODEL_RETRY)
    graph.add_node("plan", make_plan(configure, retriever))
    graph.add_node("respond", make_respond(configure), retry_policy=MODEL_RETRY)
    graph.add_node("refuse", refuse)
    tools = toolbox is not None
    graph.add_conditional_edges(
        START,
        on_loop(after_start(configure, retriever, tools)),
        {"fold_history": "fold_history", "plan": "plan", "respond": "respond"},
    )
    graph.add_conditional_edges(
        "fold_history", on_loop(first_step(configure, retriever, tools)), {"plan": "plan", "respond": "respond"}
    )
    graph.add_edge("respond", END)
    graph.add_edge("refuse", END)
    plan_routes = {"respond": "respond", "refuse": "refuse"}
    if toolbox is not None:
        graph.add_node("act", make_act(configure, toolbox), retry_policy=MODEL_RETRY)
        graph.add_node("call_tools", make_call_tools(configure, toolbox))
        graph.add_conditional_edges("act", on_loop(after_act(configure)), {"call_tools": "call_tools", "end": END})
        graph.add_conditional_edges("call_tools", on_loop(after_call_tools(configure)), {"act": "act", "end": END})
        plan_routes["act"] = "act"
    if retriever is None:
        graph.add_conditional_edges("plan", on_loop(after_plan(configure, tools)), plan_routes)
        return graph.compile(checkpointer=checkpointer, name=GRAPH_ID)

    judge = EvidenceJudge(retriever.embedder)
    graph.add_node("retrieve", make_retrieve(configure, retriever))
    graph.add_node("grade", make_grade(configure, judge), retry_policy=MODEL_RETRY)
    graph.add_node("rewrite", make_rewrite(configure, retriever), retry_policy=MODEL_RETRY)
    graph.add_node("generate", make_generate(configure), retry_policy=MODEL_RETRY)
    graph.add_node("verify", make_verify(configure, judge))
    plan_routes["retrieve"] = "retrieve"
    graph.add_conditional_edges("plan", on_loop(after_plan(configure, tools)), plan_routes)
    graph.add_edge("retrieve", "grade")
    graph.add_conditional_edges(
        "grade", on_loop(after_grade(configure)), {"generate": "generate", "rewrite": "rewrite", "refuse": "refuse"}
    )
    graph.add_edge("rewrite", "retrieve")
    graph.add_edge("generate", "verify")
    graph.add_edge("verify", END)
    return graph.compile(checkpointer=checkpointer, name=GRAPH_ID)


def memory_policy(settings, model: LanguageModel) -> MemoryPolicy:
    return MemoryPolicy(
        system_prompt=settings.system_prompt,
        token_budget=settings.context_token_budget,
        fold_target=settings.fold_target,
        summary_max_tokens=settings.summary_max_tokens,
        count_tokens=model.count_tokens,
    )
