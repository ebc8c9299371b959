"""The agent's nodes: small async functions from state to a state update.

Each node is built by a factory that closes over what it needs, so the graph
can be assembled in one place; the model and the memory policy are the run's
assistant's (``Configurator``), read from the run's context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage, RemoveMessage
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import Runtime

from appliance.agent.configured import Configurator, Configured
from appliance.agent.context import AssistantContext
from appliance.agent.memory import build_prompt, plan_fold, summarizer_prompt
from appliance.agent.state import AgentState, changed, new_turn
from appliance.llm.errors import ModelError, classify
from appliance.llm.provider import LanguageModel
from appliance.pacing import aside
from appliance.store.archive import MessageArchive

Node = Callable[[AgentState, Runtime[AssistantContext]], Awaitable[dict[str, Any]]]


def memory_of(state: AgentState) -> tuple[list, str, int]:
    return state.get("messages", []), state.get("summary", ""), state.get("folded", 0)


async def call_model(model: LanguageModel, runnable: Any, prompt: list) -> AIMessage:
    try:
        async with aside(), model.gate.slot():  # the turn's place in the lane is free while the model works
            return await runnable.ainvoke(prompt)
    except Exception as exc:
        error = classify(exc, where=model.where, model=model.name)
        if error is None:
            raise
        raise error from exc


def make_fold_history(configure: Configurator, archive: MessageArchive | None) -> Node:
    """Folds the oldest turns into the summary and, with an ``archive``, moves
    them out of the state into it (without one they stay, before ``folded``)."""

    async def fold_history(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        messages, summary, folded = memory_of(state)
        point = plan_fold(setup.policy, messages, summary, folded)
        if point is None:
            return {}
        # The summary is internal: keep its tokens out of the client's message stream.
        summarizer = setup.model.summarizer.with_config(tags=[TAG_NOSTREAM], run_name="fold_history")
        reply = await call_model(setup.model, summarizer, summarizer_prompt(summary, messages[folded:point]))
        if archive is None:
            return {"summary": reply.text.strip(), "folded": point}
        # Written before the checkpoint that names it: a run that fails here
        # leaves a batch no checkpoint names, never a checkpoint without its batch.
        archived = state.get("archived", 0)
        head = await archive.append(
            get_config()["configurable"]["thread_id"], state.get("archive_head"), archived, messages[:point]
        )
        update = {
            "summary": reply.text.strip(),
            "archived": archived + point,
            "archive_head": head,
            "messages": [RemoveMessage(id=m.id) for m in messages[:point]],
        }
        # folded stays 0 (unwritten) once folds archive: only a thread from
        # before the archive holds folded messages, archived from here on. A key
        # written is in every later checkpoint, with its version.
        return update | {"folded": 0} if folded else update

    return fold_history


def structured_answer(setup: Configured) -> Any:
    """The answering model kept to the run's response format by its provider, or
    None when the answer is free text (or the provider cannot keep it)."""
    context = setup.context
    if context.response_format == "text" or setup.model.structured is None:
        return None
    return setup.model.structured(context.response_schema if context.response_format == "json_schema" else None)


def make_respond(configure: Configurator) -> Node:
    async def respond(state: AgentState, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        prompt = build_prompt(setup.policy, *memory_of(state))
        reply = await call_model(setup.model, structured_answer(setup) or setup.answer, prompt)
        if not reply.text.strip():
            raise ModelError(f"the model {setup.model.name} returned an empty answer")
        # A plain turn starts here (agent.rag_nodes.after_start), so respond resets
        # the turn as plan would have; after plan, nothing is left to reset.
        # The model's own message, id included: the client already streamed it under that id.
        return changed(state, new_turn(state) | {"use_documents": False, "answer_mode": "generated"}) | {
            "messages": [reply]
        }

    return respond


def needs_fold(configure: Configurator) -> Callable[[AgentState], bool]:
    def over_budget(state: AgentState) -> bool:
        return plan_fold(configure.current().policy, *memory_of(state)) is not None

    return over_budget
