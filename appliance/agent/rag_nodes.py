"""The retrieval nodes: plan, retrieve, grade, rewrite, generate, refuse.

Every decision a node asks of the model (search or not, relevant or not) is a
constrained choice, so a small model cannot derail the graph with malformed
output. Internal calls carry the ``nostream`` tag: only the answer streams as
tokens; the rest streams as progress events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.types import interrupt

from appliance.agent.citations import cite, passage_dict
from appliance.agent.memory import MemoryPolicy, build_prompt
from appliance.agent.nodes import Node, call_model, memory_of
from appliance.agent.rag_prompts import (
    GRADE_CHOICES,
    ROUTE_CHOICES,
    clean_query,
    grade_prompt,
    grounded_question,
    refusal,
    rewrite_prompt,
    route_prompt,
)
from appliance.agent.state import AgentState
from appliance.knowledge.retrieval import Retriever
from appliance.llm.choices import parse_choice
from appliance.llm.errors import ModelError
from appliance.llm.provider import LanguageModel
from appliance.store.knowledge import ChunkFilter


def knowledge_bases(config: RunnableConfig) -> list[uuid.UUID]:
    """The knowledge bases a run may search (the run service has checked them)."""
    return [uuid.UUID(str(i)) for i in (config.get("configurable") or {}).get("knowledge_bases") or []]


def progress(node: str, **detail: Any) -> None:
    get_stream_writer()({"node": node, **detail})


def _tried(state: AgentState) -> list[str]:
    return [r["query"] for r in state.get("retrievals", [])]


def make_plan(model: LanguageModel, retriever: Retriever | None) -> Callable[..., Any]:
    router = model.decider(ROUTE_CHOICES).with_config(tags=[TAG_NOSTREAM], run_name="route")

    async def plan(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        question = next((str(m.text) for m in reversed(state["messages"]) if isinstance(m, HumanMessage)), "")
        turn = {"question": question, "query": question, "passages": [], "relevant": [], "retrievals": [],
                "citations": []}  # fmt: skip
        if retriever is None or not knowledge_bases(config):
            return turn | {"use_documents": False}
        progress("plan", status="deciding whether the documents are needed")
        reply = await call_model(model, router, route_prompt(question))
        return turn | {"use_documents": parse_choice(reply.text, ROUTE_CHOICES, default="search") == "search"}

    return plan


def reviewed_query(query: str, question: str) -> str:
    """With ``review_queries`` set, a person approves the query before the
    search: the run pauses here, and a resume of ``true`` (or an empty value)
    keeps the query, a string (or ``{"query": ...}``) replaces it."""
    answer = interrupt({"review": "search_query", "query": query, "question": question})
    if isinstance(answer, dict):
        answer = answer.get("query")
    if isinstance(answer, str) and answer.strip():
        return clean_query(answer, fallback=query)
    return query


def make_retrieve(retriever: Retriever, k: int) -> Callable[..., Any]:
    async def retrieve(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        query = state["query"]
        if (config.get("configurable") or {}).get("review_queries"):
            query = reviewed_query(query, state["question"])
        progress("retrieve", query=query)
        found = await retriever.search(query, ChunkFilter(knowledge_base_ids=knowledge_bases(config)), k)
        passages = [passage_dict(p) for p in found]
        trace = {"query": query, "found": len(passages), "relevant": 0}
        return {
            "query": query,
            "passages": passages,
            "relevant": [],
            "retrievals": [*state.get("retrievals", []), trace],
        }

    return retrieve


def make_grade(model: LanguageModel) -> Node:
    grader = model.decider(GRADE_CHOICES).with_config(tags=[TAG_NOSTREAM], run_name="grade")

    async def grade(state: AgentState) -> dict[str, Any]:
        passages = state.get("passages", [])
        progress("grade", passages=len(passages))
        relevant = []
        for passage in passages:
            reply = await call_model(model, grader, grade_prompt(state["question"], passage))
            if parse_choice(reply.text, GRADE_CHOICES, default="yes") == "yes":
                relevant.append(passage)
        retrievals = list(state.get("retrievals", []))
        if retrievals:
            retrievals[-1] = {**retrievals[-1], "relevant": len(relevant)}
        return {"relevant": relevant, "retrievals": retrievals}

    return grade


def make_rewrite(model: LanguageModel) -> Node:
    rewriter = model.rewriter.with_config(tags=[TAG_NOSTREAM], run_name="rewrite")

    async def rewrite(state: AgentState) -> dict[str, Any]:
        progress("rewrite", status="nothing relevant found; rewriting the query")
        reply = await call_model(model, rewriter, rewrite_prompt(state["question"], _tried(state)))
        return {"query": clean_query(reply.text, fallback=state["question"])}

    return rewrite


def make_generate(model: LanguageModel, policy: MemoryPolicy) -> Node:
    async def generate(state: AgentState) -> dict[str, Any]:
        relevant = state["relevant"]
        progress("generate", sources=len(relevant))
        prompt = build_prompt(policy, *memory_of(state))
        prompt[-1] = HumanMessage(grounded_question(state["question"], relevant))
        reply = await call_model(model, model.answer, prompt)
        if not reply.text.strip():
            raise ModelError(f"the model {model.name} returned an empty answer")
        text, citations = cite(reply.text, relevant)
        # Same id: the final state replaces the message the client streamed. The
        # citations ride on the message too, so every answer of a thread keeps its own.
        reply = AIMessage(
            content=text,
            id=reply.id,
            usage_metadata=reply.usage_metadata,
            response_metadata=reply.response_metadata | {"citations": citations},
        )
        return {"messages": [reply], "citations": citations}

    return generate


async def refuse(state: AgentState) -> dict[str, Any]:
    progress("refuse", status="the documents do not cover the question")
    return {"messages": [AIMessage(refusal(_tried(state)))], "citations": []}


def after_plan(state: AgentState) -> str:
    return "retrieve" if state.get("use_documents") else "respond"


def after_grade(max_retrievals: int) -> Callable[[AgentState], str]:
    def route(state: AgentState) -> str:
        if state.get("relevant"):
            return "generate"
        if len(state.get("retrievals", [])) < max_retrievals:
            return "rewrite"
        return "refuse"

    return route
