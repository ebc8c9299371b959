"""Request and response shapes of the OpenAI-compatible API (``/v1``), as
OpenAI's own clients send and read them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from appliance.api.schemas import rule

OPENAI_PREFIX = "/v1/"
NO_CLIENT_TOOLS = rule(maxItems=0, description="not supported: the agent calls no client tools; leave it out")


class OpenAIError(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(msgspec.Struct):
    error: OpenAIError


class Model(msgspec.Struct):
    id: str
    created: int
    owned_by: str = "appliance"
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"


class ChatMessage(msgspec.Struct, kw_only=True):
    role: Annotated[
        str, rule(enum=["system", "developer", "user", "assistant"], description="system prompts are dropped")
    ]
    # A string, or content parts ({"type": "text", "text": ...}).
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionCreate(msgspec.Struct, kw_only=True):
    """Sampling settings (temperature, top_p, max_tokens, ...) are accepted and
    left to the administrator's model configuration; unknown fields are ignored,
    as clients send many."""

    model: str
    messages: Annotated[
        list[ChatMessage], rule(minItems=1, description="the conversation, ending with the user's question")
    ]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, rule(minimum=1, maximum=1, description="the agent writes one answer")] = 1
    user: str | None = None
    tools: Annotated[list[dict[str, Any]] | None, NO_CLIENT_TOOLS] = None
    functions: Annotated[list[dict[str, Any]] | None, NO_CLIENT_TOOLS] = None
    # This appliance's own: the knowledge bases to answer from (default: the
    # conversation's choice, else all of the tenant's).
    knowledge_bases: list[str] | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(msgspec.Struct):
    content: str
    role: Literal["assistant"] = "assistant"


class Choice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: str = "stop"


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    # This appliance's own: the thread that holds the conversation, and the
    # sources the answer's [n] markers point at.
    conversation_id: str | None = None
    citations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # Why the search behind the answer was less than whole (the vector index
    # unavailable: lexical search alone), or null.
    degraded: str | None = None
