"""The agent's nodes: small async functions from state to a state update.

Each node is built by a factory that closes over what it needs (the model and
the memory policy), so the graph can be assembled in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.constants import TAG_NOSTREAM

from appliance.agent.memory import MemoryPolicy, build_prompt, plan_fold, summarizer_prompt
from appliance.agent.state import AgentState
from appliance.llm.errors import ModelError, classify
from appliance.llm.provider import LanguageModel

Node = Callable[[AgentState], Awaitable[dict[str, Any]]]


def memory_of(state: AgentState) -> tuple[list, str, int]:
    return state["messages"], state.get("summary", ""), state.get("folded", 0)


async def call_model(model: LanguageModel, runnable: Any, prompt: list) -> AIMessage:
    try:
        async with model.gate.slot():
            return await runnable.ainvoke(prompt)
    except Exception as exc:
        error = classify(exc, where=model.where, model=model.name)
        if error is None:
            raise
        raise error from exc


def make_fold_history(model: LanguageModel, policy: MemoryPolicy) -> Node:
    # The summary is internal: keep its tokens out of the client's message stream.
    summarizer = model.summarizer.with_config(tags=[TAG_NOSTREAM], run_name="fold_history")

    async def fold_history(state: AgentState) -> dict[str, Any]:
        messages, summary, folded = memory_of(state)
        point = plan_fold(policy, messages, summary, folded)
        if point is None:
            return {}
        reply = await call_model(model, summarizer, summarizer_prompt(summary, messages[folded:point]))
        return {"summary": reply.text.strip(), "folded": point}

    return fold_history


def make_respond(model: LanguageModel, policy: MemoryPolicy) -> Node:
    async def respond(state: AgentState) -> dict[str, Any]:
        prompt = build_prompt(policy, *memory_of(state))
        reply = await call_model(model, model.answer, prompt)
        if not reply.text.strip():
            raise ModelError(f"the model {model.name} returned an empty answer")
        # The model's own message, id included: the client already streamed it under that id.
        return {"messages": [reply], "answer_mode": "generated"}

    return respond


def needs_fold(policy: MemoryPolicy) -> Callable[[AgentState], str]:
    def route(state: AgentState) -> str:
        return "fold_history" if plan_fold(policy, *memory_of(state)) is not None else "plan"

    return route
