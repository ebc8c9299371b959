"""Tool calls for a model without native tool calling (the embedded llama.cpp
model): the tools described in the prompt, and decoding constrained by a GBNF
grammar so the reply is always either one valid call, as JSON whose arguments
fit the tool's input schema, or a plain answer, which cannot start with "{".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

# A plain answer: any text that does not open a JSON object.
ANSWER_RULE = "answer ::= [^{] [^\\x00]*"

TOOLS_PROMPT = (
    "Tools:\n{tools}\n\nWhen a tool can answer, call it: reply with only JSON, like\n{example}\n"
    "When no tool fits, or a tool result is already there, reply in plain words."
)


def function_of(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as bound (OpenAI's function shape): its function."""
    return tool.get("function", tool)


def _alternative(tool: dict[str, Any]) -> dict[str, Any]:
    schema = function_of(tool).get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"tool": {"const": function_of(tool)["name"]}, "arguments": schema},
        "required": ["tool", "arguments"],
    }


def call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of one call of one of ``tools``: {"tool": NAME, "arguments": {...}}."""
    return {"oneOf": [_alternative(tool) for tool in tools]}


def tool_call_grammar(tools: Sequence[dict[str, Any]], *, answer: bool = True) -> str:
    """The grammar of a reply: one call of one of ``tools`` (arguments as its
    schema says, or any object where the schema is beyond the converter), or
    (``answer``) a plain answer."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    alternatives = []
    for tool in tools:
        try:
            json_schema_to_gbnf(json.dumps(_alternative(tool)))
            alternatives.append(_alternative(tool))
        except Exception:  # a schema the converter cannot express: the arguments are any object
            alternatives.append(_alternative({"name": function_of(tool)["name"], "parameters": {"type": "object"}}))
    call = json_schema_to_gbnf(json.dumps({"oneOf": alternatives}))
    if not answer:
        return call
    call = call.replace("root ::=", "call ::=", 1)
    return f"root ::= call | answer\n{ANSWER_RULE}\n{call}"


def tools_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The tools, each with its arguments, and a call of the first as the example."""
    lines = []
    for f in map(function_of, tools):
        properties = (f.get("parameters") or {}).get("properties") or {}
        arguments = ", ".join(f"{name} ({p.get('type', 'any')})" for name, p in properties.items()) or "none"
        lines.append(f"- {f['name']}: {f.get('description', '')}. Arguments: {arguments}")
    first = function_of(tools[0])
    example_args = {name: "..." for name in ((first.get("parameters") or {}).get("properties") or {})}
    example = json.dumps({"tool": first["name"], "arguments": example_args})
    return TOOLS_PROMPT.format(tools="\n".join(lines), example=example)


def parse_tool_call(text: str) -> dict[str, Any] | None:
    """The call a reply makes ({name, args, id}), or None for a plain answer."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # cut off by the token limit: not a call
    if not isinstance(value, dict) or not isinstance(value.get("tool"), str):
        return None
    arguments = value.get("arguments")
    return {"name": value["tool"], "args": arguments if isinstance(arguments, dict) else {},
            "id": f"call_{uuid.uuid4().hex[:24]}"}  # fmt: skip


def as_tool_call(message: Any) -> Any:
    """A reply constrained to a call (its text the call's JSON) as a message with that tool call."""
    from langchain_core.messages import AIMessage

    call = parse_tool_call(message.text)
    if call is None:
        return message
    return AIMessage(content="", tool_calls=[call], id=message.id, usage_metadata=message.usage_metadata)


def as_call_text(tool_calls: Sequence[dict[str, Any]]) -> str:
    """A past call as the model wrote it, for the prompt of the next step."""
    return "\n".join(json.dumps({"tool": c["name"], "arguments": c.get("args", {})}) for c in tool_calls)
