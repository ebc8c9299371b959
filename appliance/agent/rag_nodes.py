"""The retrieval nodes: plan, retrieve, grade, rewrite, generate, verify, refuse.

The model is asked only for what its manifest entry trusts it with: every
model writes drafts; judging passages and rewriting queries go to the model
only when it can ``decide`` or ``rewrite``, and are otherwise decided from
retrieval evidence (``agent.evidence``) and the knowledge base's vocabulary.
Whether to search at all is a rule (``agent.routing``). Every draft is checked
against its sources before anyone sees it. Internal calls carry the
``nostream`` tag; the checked answer is streamed as one message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from appliance.agent.citations import cite
from appliance.agent.configured import Configurator
from appliance.agent.context import AssistantContext
from appliance.agent.evidence import (
    Evidence,
    EvidenceJudge,
    check_answer,
    excerpts,
    extractive_answer,
    relevant_passages,
)
from appliance.agent.memory import build_prompt
from appliance.agent.nodes import Node, call_model, memory_of, needs_fold
from appliance.agent.rag_prompts import (
    GRADE_CHOICES,
    clean_query,
    grade_prompt,
    grounded_question,
    refusal,
    rewrite_prompt,
)
from appliance.agent.routing import is_small_talk
from appliance.agent.state import AgentState, changed, new_turn
from appliance.knowledge.retrieval import Retriever
from appliance.knowledge.sources import passage_dict
from appliance.llm.choices import parse_choice
from appliance.llm.provider import LanguageModel
from appliance.store.knowledge import ChunkFilter


def knowledge_bases(context: AssistantContext) -> list[uuid.UUID]:
    """The knowledge bases a run may search (the run service resolved and checked them)."""
    return [uuid.UUID(i) for i in context.knowledge_bases]


def progress(node: str, **detail: Any) -> None:
    get_stream_writer()({"node": node, **detail})


def question_of(state: AgentState) -> str:
    return state.get("question", "")  # unset in a state set by hand (update_state as a node)


def _tried(state: AgentState) -> list[str]:
    return [r["query"] for r in state.get("retrievals", [])]


def answer_metadata(state: AgentState, citations: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """What rides on an answer from the documents: its sources, how it was made,
    and why the search behind it was less than whole, when it was."""
    metadata = {"citations": citations, "answer_mode": mode}
    if state.get("degraded"):
        metadata["degraded"] = state["degraded"]
    return metadata


def make_plan(configure: Configurator, retriever: Retriever | None) -> Node:
    """A conversation with knowledge bases searches them unless the message is
    small talk (rules, no model); an assistant that answers only from documents
    searches for every message, and refuses when it has none to search."""

    async def plan(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        context = configure(runtime.context).context
        turn = new_turn(state)
        if documents_ruled_out(context, retriever):
            use = False
        elif context.documents_only:
            use = True
        else:
            progress("plan", status="deciding whether the documents are needed")
            use = not is_small_talk(turn["question"])
        return changed(state, turn | {"use_documents": use})

    return plan


def documents_ruled_out(context: AssistantContext, retriever: Retriever | None) -> bool:
    """Whether this turn answers without documents whatever its question is: a
    structured answer is the model's own, and a conversation with nothing to
    search answers from memory (unless only documents may answer)."""
    if context.response_format != "text":
        return True
    return not context.documents_only and (retriever is None or not context.knowledge_bases)


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


def make_retrieve(configure: Configurator, retriever: Retriever) -> Callable[..., Any]:
    async def retrieve(state: AgentState, config: RunnableConfig, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        context = configure(runtime.context).context
        query = state.get("query") or question_of(state)
        if (config.get("configurable") or {}).get("review_queries"):
            query = reviewed_query(query, question_of(state))
        progress("retrieve", query=query)
        scope = ChunkFilter(knowledge_base_ids=knowledge_bases(context))
        # More candidates than are answered from, under a low floor: passages
        # holding several facts are less similar to a question than the one
        # sentence that answers it, and the judgement looks at sentences.
        candidates = max(2 * context.retrieval_k, 8)
        found = await retriever.search(query, scope, candidates, floor=context.relevance_floor)
        passages = [passage_dict(p) for p in found.passages]
        trace = {"query": query, "found": len(passages), "relevant": 0}
        return {
            "query": query,
            "passages": passages,
            "relevant": [],
            "retrievals": [*state.get("retrievals", []), trace],
            "degraded": found.degraded or state.get("degraded"),
        }

    return retrieve


def make_grade(configure: Configurator, judge: EvidenceJudge) -> Node:
    """Which passages answer the question: the model's yes or no for a model
    trusted to decide, else the retrieval evidence alone. Either way the
    answering sentences are kept, for the answer check and extractive answers."""

    async def by_model(
        model: LanguageModel, question: str, passages: list[dict[str, Any]], k: int
    ) -> tuple[list, list[Evidence], float]:
        grader = model.decider(GRADE_CHOICES).with_config(tags=[TAG_NOSTREAM], run_name="grade")
        relevant = []
        for passage in passages[:k]:
            reply = await call_model(model, grader, grade_prompt(question, passage))
            if parse_choice(reply.text, GRADE_CHOICES, default="yes") == "yes":
                relevant.append(passage)
        started = time.perf_counter()
        found = judge.best_of(await judge.score(question, relevant))
        return relevant, found, time.perf_counter() - started

    async def by_evidence(
        model: LanguageModel, question: str, passages: list[dict[str, Any]], k: int
    ) -> tuple[list, list[Evidence], float]:
        started = time.perf_counter()
        found = judge.answering(await judge.score(question, passages))
        return relevant_passages(passages, found)[:k], found, time.perf_counter() - started

    async def grade(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        decide = by_model if setup.model.can("decide") else by_evidence
        passages = state.get("passages", [])
        relevant, answering, seconds = await decide(
            setup.model, question_of(state), passages, setup.context.retrieval_k
        )
        progress("grade", passages=len(passages), relevant=len(relevant), check_ms=round(seconds * 1000, 1))
        retrievals = list(state.get("retrievals", []))
        if retrievals:
            retrievals[-1] = {**retrievals[-1], "relevant": len(relevant)}
        return {"relevant": relevant, "retrievals": retrievals, "evidence": [e.as_dict() for e in answering]}

    return grade


def make_rewrite(configure: Configurator, retriever: Retriever) -> Node:
    """The second query: the model's rewrite for a model trusted to rewrite, else lexical expansion."""

    async def rewrite(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        progress("rewrite", status="nothing relevant found; searching with other words")
        if setup.model.can("rewrite"):
            rewriter = setup.model.rewriter.with_config(tags=[TAG_NOSTREAM], run_name="rewrite")
            reply = await call_model(setup.model, rewriter, rewrite_prompt(question_of(state), _tried(state)))
            return {"query": clean_query(reply.text, fallback=question_of(state))}
        scope = ChunkFilter(knowledge_base_ids=knowledge_bases(setup.context))
        return {"query": await retriever.expanded_query(question_of(state), scope)}

    return rewrite


def make_generate(configure: Configurator) -> Node:
    """The model's draft from the relevant passages. It does not stream: the
    client sees the answer once it has been checked (``verify``), so what was
    shown is what is kept. A model not trusted to judge relevance is shown only
    the answering sentences of each passage: a small model loses its way in
    whole passages, and copies or rephrases one sentence well."""

    def writer(setup: Any, sources: int) -> Any:
        """Where the provider can, the draft must end by citing a source (small models forget to)."""
        chosen = setup.model.citer(sources) if setup.model.citer else setup.answer
        return chosen.with_config(tags=[TAG_NOSTREAM], run_name="generate")

    async def generate(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        relevant = state.get("relevant", [])
        progress("generate", sources=len(relevant))
        if not setup.model.can("decide"):
            relevant = excerpts(relevant, [Evidence(**e) for e in state.get("evidence", [])])
        prompt = build_prompt(setup.policy, *memory_of(state))
        asked = HumanMessage(grounded_question(question_of(state), relevant))
        # The question replaces the turn's own message; a state set by hand may have none.
        prompt[-1:] = [asked] if isinstance(prompt[-1], HumanMessage) else [prompt[-1], asked]
        reply = await call_model(setup.model, writer(setup, len(relevant)), prompt)
        return {"draft": reply.text.strip(), "draft_usage": dict(reply.usage_metadata or {})}

    return generate


def make_verify(configure: Configurator, judge: EvidenceJudge) -> Node:
    """The draft is kept when every sentence of it is supported by a passage it
    cites; otherwise the answer is the answering sentences, quoted. Only a model
    trusted to rewrite may paraphrase its sources; a small one must keep to
    their words, which it otherwise bends into plausible inventions."""

    async def verify(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        model = configure(runtime.context).model
        started = time.perf_counter()
        relevant = state.get("relevant", [])
        answering = [Evidence(**e) for e in state.get("evidence", [])]
        check = await check_answer(
            judge,
            question_of(state),
            state.get("draft", ""),
            relevant,
            answering,
            paraphrase=model.can("rewrite"),
        )
        if check.supported:
            text, citations = cite(state.get("draft", ""), relevant, check.spans)
            mode, reason = "generated", None
        else:
            text, citations = extractive_answer(relevant, answering)
            mode, reason = "extractive", check.reason
        seconds = time.perf_counter() - started
        progress("verify", answer_mode=mode, reason=reason, check_ms=round(seconds * 1000, 1))
        # The citations ride on the message too, so every answer of a thread keeps its own.
        # The draft's usage is the answer's: the whole prompt the model read, passages included.
        usage = state.get("draft_usage") or None
        reply = AIMessage(content=text, response_metadata=answer_metadata(state, citations, mode), usage_metadata=usage)
        return {"messages": [reply], "citations": citations, "answer_mode": mode}

    return verify


async def refuse(state: AgentState) -> dict[str, Any]:
    progress("refuse", status="the documents do not cover the question")
    reply = AIMessage(refusal(_tried(state)), response_metadata=answer_metadata(state, [], "refused"))
    return {"messages": [reply], "citations": [], "answer_mode": "refused"}


def takes_tools(context: AssistantContext, tools: bool) -> bool:
    """``tools``: the graph has the tool loop, taken by an assistant that names tools."""
    return tools and bool(context.tools or context.client_tools)


def first_step(
    configure: Configurator, retriever: Retriever | None, tools: bool = False
) -> Callable[[AgentState], str]:
    """Where a turn's work begins once its window fits the budget (at START, or
    after ``fold_history``). A turn that has nothing for ``plan`` to decide (no
    tools, and no documents whatever the question) goes straight to
    ``respond``, which resets the turn itself: a super-step and its checkpoint
    fewer, and a plain conversation never writes plan's channels."""

    def route(state: AgentState) -> str:
        context = configure.current().context
        if takes_tools(context, tools) or not documents_ruled_out(context, retriever):
            return "plan"
        return "respond"

    return route


def after_start(
    configure: Configurator, retriever: Retriever | None, tools: bool = False
) -> Callable[[AgentState], str]:
    """Where a turn begins: a window over its budget is folded first."""
    over_budget, begin = needs_fold(configure), first_step(configure, retriever, tools)

    def route(state: AgentState) -> str:
        return "fold_history" if over_budget(state) else begin(state)

    return route


def after_plan(configure: Configurator, tools: bool = False) -> Callable[[AgentState], str]:
    def route(state: AgentState) -> str:
        context = configure.current().context
        if takes_tools(context, tools):
            return "act"
        if not state.get("use_documents"):
            return "respond"
        # Only documents may answer, and there are none to search.
        return "retrieve" if context.knowledge_bases else "refuse"

    return route


def after_grade(configure: Configurator) -> Callable[[AgentState], str]:
    def route(state: AgentState) -> str:
        if state.get("relevant"):
            return "generate"
        if len(state.get("retrievals", [])) < configure.current().context.searches_per_question:
            return "rewrite"
        return "refuse"

    return route
