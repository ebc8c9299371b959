"""What an assistant configures: the graph's typed context (``context_schema``).

Every run carries one whole ``AssistantContext``: the appliance's defaults,
overlaid with its assistant's settings, resolved by the run service when the
run is queued. So a run does what its assistant said when it was asked, in
whichever process executes it, and a later change to the assistant changes
only the runs after it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

INSTRUCTIONS_MAX = 8000
# Every knowledge base of the tenant, whatever exists when the run starts.
ALL_KNOWLEDGE_BASES = "*"
# A tool as an assistant names it: a built-in tool's name, server/tool or server/*.
TOOL_REF_PATTERN = r"^[A-Za-z0-9_.-]{1,100}(/([A-Za-z0-9_.-]{1,100}|\*))?$"


@dataclass(frozen=True, kw_only=True)
class ClientFunction:
    """A function the client runs itself (OpenAI's ``tools``)."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Annotated[str, Meta(max_length=4000)] = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, kw_only=True)
class AssistantContext:
    instructions: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=INSTRUCTIONS_MAX,
            description="The system prompt: who the assistant is and how it answers",
        ),
    ]
    knowledge_bases: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=200)]],
        Meta(
            max_length=100,
            description='Knowledge bases searched (ids or names); ["*"] is every knowledge base of the tenant, '
            "[] none. A thread's metadata.knowledge_bases or a run's own choice overrides it",
        ),
    ] = field(default_factory=lambda: [ALL_KNOWLEDGE_BASES])
    documents_only: Annotated[
        bool,
        Meta(
            description="Answer every message from the documents or refuse: no small talk, and no conversation "
            "without knowledge bases. Either way a question the documents do not cover is refused, never guessed"
        ),
    ] = False
    retrieval_k: Annotated[int, Meta(ge=1, le=20, description="Passages an answer is written from")] = 4
    relevance_floor: Annotated[
        float, Meta(ge=-1, le=1, description="Passages less similar than this to the question are not considered")
    ] = 0.1
    searches_per_question: Annotated[
        int, Meta(ge=1, le=5, description="Searches per question: the first, then rewrites while nothing answers")
    ] = 2
    memory_token_budget: Annotated[
        int,
        Meta(ge=64, le=131_072, description="Tokens of conversation the prompt holds before older turns are folded"),
    ] = 1024
    model: Annotated[
        str, Meta(max_length=200, description='The chat model; "" (the default) is the appliance\'s configured one')
    ] = ""
    temperature: Annotated[float, Meta(ge=0, le=2, description="Sampling temperature of answers")] = 0.2
    max_tokens: Annotated[int, Meta(ge=1, le=8192, description="Longest answer, in tokens")] = 256
    system_messages: Annotated[
        Literal["append", "refuse"],
        Meta(
            description="What a system (or developer) message from an OpenAI client does: append it to the "
            "instructions for that turn (the default), or refuse the request with a 400",
        ),
    ] = "append"
    tools: Annotated[
        list[Annotated[str, Meta(pattern=TOOL_REF_PATTERN, max_length=200)]],
        Meta(
            max_length=50,
            description="Tools the assistant may call: a built-in one (search_documents, calculator, "
            "current_time), server/tool for a registered tool server's tool, or server/* for all of them. "
            "[] (the default): no tools, the retrieval pipeline answers",
        ),
    ] = field(default_factory=list)
    response_format: Annotated[
        Literal["text", "json_object", "json_schema"],
        Meta(
            description="text (the default); json_object: the answer is a JSON object; json_schema: it fits "
            "response_schema. Either is enforced by the provider while decoding, and the answer then comes "
            "from the model alone, without a document search",
        ),
    ] = "text"
    response_schema: Annotated[dict[str, Any] | None, Meta(description="The JSON Schema a json_schema answer fits")] = (
        None
    )
    client_tools: Annotated[
        list[ClientFunction],
        Meta(
            max_length=128,
            description="Functions the client runs itself, usually given per run (OpenAI's tools): a call of one "
            "ends the turn and is handed back; the next run's tool messages carry the results",
        ),
    ] = field(default_factory=list)
    tool_choice: Annotated[
        str,
        Meta(
            pattern=r"^(auto|none|required|function:[A-Za-z0-9_.-]{1,100})$",
            description='"auto": the model may call tools; "none": it may not; "required": it must call one; '
            '"function:NAME": it must call that one',
        ),
    ] = "auto"
    parallel_tool_calls: Annotated[
        bool, Meta(description="Whether one step may call several tools; false keeps the first call")
    ] = True
    max_tool_steps: Annotated[
        int, Meta(ge=1, le=20, description="Model steps with tools in one turn; the last one must answer")
    ] = 4
    tool_retries: Annotated[
        int,
        Meta(
            ge=0,
            le=5,
            description="Failed calls of one tool the model may correct in a turn before the "
            "assistant says the tool failed",
        ),
    ] = 2


FIELDS = tuple(f.name for f in dataclasses.fields(AssistantContext))


class ContextError(ValueError):
    """A context field is unknown or out of range; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def overlay(base: AssistantContext, changes: dict[str, Any], where: str = "context") -> AssistantContext:
    """``base`` with ``changes`` applied, checked field by field (``where`` names them in errors)."""
    if not isinstance(changes, dict):
        raise ContextError(f"{where} must be an object of assistant settings", where)
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        named = ", ".join(f"{where}.{key}" for key in unknown)
        raise ContextError(f"{named}: not an assistant setting; they are {', '.join(FIELDS)}", f"{where}.{unknown[0]}")
    try:
        # to_builtins, not dataclasses.asdict: the same dict, some 25x faster (a run makes one).
        return msgspec.convert(msgspec.to_builtins(base) | changes, AssistantContext)
    except msgspec.ValidationError as exc:
        problem, _, path = str(exc).partition(" - at `$.")
        field = f"{where}.{path.rstrip('`').split('[')[0]}" if path else where
        raise ContextError(f"{field}: {problem}", field) from None


def schema(of: type = AssistantContext) -> dict[str, Any]:
    """The JSON Schema of a graph's context type, as ``/assistants/{id}/schemas`` shows it."""
    (root,), components = msgspec.json.schema_components([of], ref_template="{name}")

    def inlined(node: Any) -> Any:
        """The types it holds (a client's function) written in place: the schema is
        embedded in other documents (the API description), where no $ref of its own resolves."""
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inlined(components[node["$ref"]])
            return {k: inlined(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inlined(v) for v in node]
        return node

    body = inlined(components[root["$ref"]])
    body.pop("required", None)  # an assistant sets what it changes; the rest is the appliance's default
    return body


def built_in_context(settings: Any) -> AssistantContext:
    """The built-in assistant: the appliance's settings. Its model is "": whichever
    model the process running the run is configured with."""
    return AssistantContext(
        instructions=settings.system_prompt,
        retrieval_k=min(settings.retrieval_k, 20),
        searches_per_question=settings.rag_max_retrievals,
        memory_token_budget=settings.context_token_budget,
        temperature=settings.temperature,
        max_tokens=settings.max_answer_tokens,
    )
