"""The tool loop of an assistant with tools: ``act`` asks the model with the
run's tools bound; ``call_tools`` makes the calls it asked for and hands the
results back; ``act`` again, until the model answers.

Bounds that do not rest on the model: after ``max_tool_steps`` steps the
model is asked without tools, so it must answer; a tool that failed more than
``tool_retries`` times this turn ends the turn with an answer naming it. A
tool an admin marked ``requires_approval`` pauses the run for a person first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from appliance.agent.citations import cite
from appliance.agent.configured import Configurator
from appliance.agent.context import AssistantContext
from appliance.agent.memory import build_prompt
from appliance.agent.nodes import Node, call_model, memory_of, structured_answer
from appliance.agent.rag_nodes import knowledge_bases
from appliance.agent.state import AgentState
from appliance.llm.errors import ModelError
from appliance.tools.spec import RunTools, ToolResult, ToolSpec
from appliance.tools.toolbox import Toolbox, check_arguments

log = logging.getLogger(__name__)

TOOLS_NOTE = (
    "You can call tools. Call one when it helps to answer, with arguments that fit its schema; when a call "
    "fails, read the error and call again with corrected arguments. When you have what you need, answer in "
    "plain words. Cite passages that search_documents returned as [n]."
)


def run_of(config: RunnableConfig) -> tuple[str, uuid.UUID, uuid.UUID]:
    """(tenant, run id, thread id) of the run executing this node."""
    metadata = config.get("metadata") or {}
    run_id = metadata.get("run_id") or str(uuid.uuid4())  # a state update outside any run
    thread_id = (config.get("configurable") or {})["thread_id"]
    return metadata.get("tenant", ""), uuid.UUID(str(run_id)), uuid.UUID(str(thread_id))


def with_tools_note(prompt: list, tools: RunTools) -> list:
    """The prompt with what the model should know about its tools, and which are missing and why."""
    note = TOOLS_NOTE if tools.specs else ""
    for server, why in tools.unavailable.items():
        note += f"\nThe tools of {server} cannot be used now ({why}); say so if the question needs them."
    return [prompt[0], SystemMessage(note.strip()), *prompt[1:]] if note else prompt


def exhausted(state: AgentState, retries: int) -> str | None:
    """The tool that failed more often this turn than its retries allow, if one did."""
    return next((name for name, n in state.get("tool_failures", {}).items() if n > retries), None)


def failure_answer(state: AgentState, tool: str) -> AIMessage:
    errors = [m for m in state.get("messages", []) if isinstance(m, ToolMessage) and m.name == tool]
    last = errors[-1].text if errors else ""
    times = state.get("tool_failures", {}).get(tool, 0)
    text = f"I could not complete this: the tool {tool} failed {times} times. Its last error was: {last}"
    return AIMessage(text, response_metadata={"answer_mode": "tool_failed", "failed_tool": tool})


def client_specs(context: AssistantContext) -> list[ToolSpec]:
    """The client's own tools (OpenAI's ``tools``), as the model is offered them."""
    return [
        ToolSpec(ref=f.name, name=f.name, description=f.description, input_schema=f.parameters, client=True)
        for f in context.client_tools
    ]


def offered(specs: list[ToolSpec], choice: str) -> list[ToolSpec]:
    """What ``tool_choice`` lets the model call: none, one named, or all."""
    if choice == "none":
        return []
    if choice.startswith("function:"):
        return [s for s in specs if s.name == choice.removeprefix("function:")]
    return specs


def bind(model: Any, tools: list[dict[str, Any]]) -> Any:
    """The model with ``tools`` bound; a model that cannot take tools answers without them."""
    try:
        return model.bind_tools(tools)
    except NotImplementedError:
        log.warning("the model %s cannot take tools; it answers without them", type(model).__name__)
        return model


def make_act(configure: Configurator, toolbox: Toolbox) -> Callable[..., Any]:
    async def act(state: AgentState, config: RunnableConfig, runtime: Runtime[AssistantContext]) -> dict[str, Any]:
        setup = configure(runtime.context)
        context = setup.context
        if failed := exhausted(state, context.tool_retries):
            return {"messages": [failure_answer(state, failed)], "answer_mode": "generated"}
        tenant, _, _ = run_of(config)
        tools = await toolbox.for_run(context.tools, tenant)
        if tools.unavailable:
            get_stream_writer()({"node": "act", "unavailable_tools": tools.unavailable})
        steps = state.get("tool_steps", 0)
        specs = offered([*tools.specs, *client_specs(context)], context.tool_choice)
        may_call = bool(specs) and steps < context.max_tool_steps
        bound = [s.as_openai() for s in specs]
        structured = structured_answer(setup)
        model = bind(setup.answer, bound) if may_call else setup.answer
        if structured is not None:
            model = model.with_config(tags=[TAG_NOSTREAM])  # the answer is written again, to the format
        prompt = with_tools_note(build_prompt(setup.policy, *memory_of(state)), RunTools(specs, tools.unavailable))
        reply = await call_model(setup.model, model, prompt)
        must_call = may_call and steps == 0 and context.tool_choice not in ("auto", "none")
        if must_call and not reply.tool_calls and setup.model.caller is not None:
            # tool_choice asked for a call and the model answered: the provider makes it call.
            reply = await call_model(setup.model, setup.model.caller(bound), prompt)
        if reply.tool_calls and may_call:
            if not context.parallel_tool_calls:
                reply = reply.model_copy(update={"tool_calls": reply.tool_calls[:1]})
            return {"messages": [reply], "tool_steps": steps + 1}
        if structured is not None:
            # A free answer after the calls; the provider keeps this one to the response format.
            reply = await call_model(setup.model, structured, prompt)
        if not reply.text.strip():
            if not reply.tool_calls:
                raise ModelError(f"the model {setup.model.name} returned an empty answer")
            reply = AIMessage(
                f"I could not answer within the {context.max_tool_steps} tool steps a turn allows.", id=reply.id
            )
        text, citations = cite(reply.text, state.get("passages", []))
        metadata = {"citations": citations, "answer_mode": "generated"}
        if tools.unavailable:
            metadata["unavailable_tools"] = tools.unavailable
        answer = AIMessage(
            text, id=reply.id, response_metadata={**reply.response_metadata, **metadata},
            usage_metadata=reply.usage_metadata,
        )  # fmt: skip
        return {"messages": [answer], "citations": citations, "answer_mode": "generated"}

    return act


def client_calls(message: Any, context: AssistantContext) -> list[dict[str, Any]]:
    """The calls of ``message`` that are the client's to make."""
    names = {f.name for f in context.client_tools}
    return [c for c in getattr(message, "tool_calls", None) or [] if c["name"] in names]


def after_act(configure: Configurator) -> Callable[[AgentState], str]:
    """Calls of the appliance's tools are made; a turn whose calls are all the
    client's ends, handing them back."""

    def route(state: AgentState) -> str:
        last = state.get("messages", [])[-1:]
        if not last or not isinstance(last[0], AIMessage) or not last[0].tool_calls:
            return "end"
        handed_back = client_calls(last[0], configure.current().context)
        return "end" if len(handed_back) == len(last[0].tool_calls) else "call_tools"

    return route


def after_call_tools(configure: Configurator) -> Callable[[AgentState], str]:
    """Back to the model, unless the step also called the client's tools: then they are handed back."""

    def route(state: AgentState) -> str:
        asked = next((m for m in reversed(state.get("messages", [])) if isinstance(m, AIMessage)), None)
        return "end" if client_calls(asked, configure.current().context) else "act"

    return route


# What a person may answer to a call that waits for approval.
APPROVAL_ACTIONS = ("approve", "edit", "reject")


def approval(spec: ToolSpec, call: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """Pause the run for a person (``interrupt``): (action, arguments, reason).
    They resume with "approve", {"action": "edit", "args": {...}} or
    {"action": "reject", "reason": "..."}. Edited arguments that do not fit the
    tool's schema ask again, saying why."""
    problem = None
    while True:
        request = {
            "type": "tool_approval",
            "tool_call": {"id": call["id"], "name": call["name"], "args": call["args"]},
            "tool": spec.ref,
            "server": spec.server,
            "input_schema": spec.input_schema,
            "actions": list(APPROVAL_ACTIONS),
        }
        if problem:
            request["problem"] = problem
        answer = interrupt(request)
        action, args, reason = read_decision(answer, call["args"])
        if action != "edit":
            return action, args, reason
        try:
            check_arguments(spec, args)
            return action, args, reason
        except Exception as exc:  # a ToolError: the edit does not fit the schema
            problem = f"the edited arguments do not fit the tool: {exc}"


def read_decision(answer: Any, args: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    if answer is True or answer in (None, "approve", "approved", "yes"):
        return "approve", args, ""
    if answer is False or answer in ("reject", "rejected", "no"):
        return "reject", args, ""
    if isinstance(answer, dict):
        action = str(answer.get("action", "approve")).lower()
        if action == "edit" and isinstance(answer.get("args"), dict):
            return "edit", answer["args"], ""
        if action == "reject":
            return "reject", args, str(answer.get("reason") or "")
        if action == "approve":
            return "approve", args, ""
    # Anything else is not a yes: the call is not made.
    return "reject", args, f"the answer {str(answer)[:100]!r} was not approve, edit or reject"


def make_call_tools(configure: Configurator, toolbox: Toolbox) -> Node:
    async def call_tools(
        state: AgentState, config: RunnableConfig, runtime: Runtime[AssistantContext]
    ) -> dict[str, Any]:
        context = configure(runtime.context).context
        tenant, run_id, thread_id = run_of(config)
        tools = await toolbox.for_run(context.tools, tenant)
        handed_back = {c["id"] for c in client_calls(state["messages"][-1], context)}
        calls = [c for c in state["messages"][-1].tool_calls if c["id"] not in handed_back]
        # Every approval first: nothing is sent before a person has answered for all of them.
        decisions = {
            call["id"]: approval(spec, call)
            for call in calls
            if (spec := tools.named(call["name"])) is not None and spec.requires_approval
        }
        write = get_stream_writer()
        failures = dict(state.get("tool_failures", {}))
        passages = list(state.get("passages", []))
        messages: list[ToolMessage] = []
        for call in calls:
            name, call_id = call["name"], call["id"]
            spec = tools.named(name)
            action, args, reason = decisions.get(call_id, ("approve", call["args"], ""))
            write({"node": "call_tools", "tool_call_id": call_id, "name": name, "status": "calling"})
            if spec is None:
                known = ", ".join(s.name for s in tools.specs) or "none"
                result = ToolResult(text=f"There is no tool {name}; the tools are: {known}.", is_error=True)
            elif action == "reject":
                result = ToolResult(text=f"The user rejected this call of {name}. {reason}".strip())
            else:
                result = await toolbox.call_once(
                    spec, args, run_id=run_id, thread_id=thread_id, tool_call_id=call_id,
                    knowledge_bases=knowledge_bases(context), retrieval_k=context.retrieval_k,
                    first_source=len(passages) + 1,
                )  # fmt: skip
            if result.is_error:
                failures[name] = failures.get(name, 0) + 1
            if isinstance(result.structured, dict) and name == "search_documents":
                passages.extend(result.structured.get("passages", []))
            status = "rejected" if action == "reject" else "unknown" if result.unknown else None
            write({"node": "call_tools", "tool_call_id": call_id, "name": name,
                   "status": status or ("failed" if result.is_error else "done")})  # fmt: skip
            messages.append(
                ToolMessage(
                    result.text,
                    tool_call_id=call_id,
                    name=name,
                    status="error" if result.is_error else "success",
                    artifact={"outcome": status or "done", "arguments": args, "server": spec and spec.server},
                )  # fmt: skip
            )
        return {"messages": messages, "tool_failures": failures, "passages": passages}

    return call_tools
