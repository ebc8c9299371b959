"""Request and response shapes of the OpenAI-compatible API (``/v1``), as
OpenAI's own clients send and read them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from appliance.api.schemas import rule
from appliance.services.embeddings import MODEL_ID as EMBEDDING_MODEL

OPENAI_PREFIX = "/v1/"
NO_FUNCTIONS = rule(maxItems=0, description="the legacy form of tools: send tools instead")
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


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


class EmbeddingModel(Model):
    dimensions: int = 0  # the length of its vectors


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"


# A message's text: a string, or content parts ({"type": "text", "text": ...}).
Content = str | list[dict[str, Any]]


# The messages a client sends, one shape per role as in OpenAI's own
# description: the role is the tag, so each role's required fields are checked.
class _Said(msgspec.Struct, kw_only=True, tag_field="role"):
    content: Content
    name: str | None = None


class SystemMessage(_Said, tag="system"):
    """Joins the assistant's instructions for this turn."""


class DeveloperMessage(_Said, tag="developer"):
    """As a system message."""


class UserMessage(_Said, tag="user"):
    pass


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: Annotated[str, Meta(description="the arguments, as a JSON object in a string")]


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class AssistantTurn(msgspec.Struct, kw_only=True, tag_field="role", tag="assistant"):
    """An earlier answer, or the client's tools it called, as the client shows them."""

    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(msgspec.Struct, kw_only=True, tag_field="role", tag="tool"):
    """The result of a call of a client's tool, answering the assistant message that made it."""

    content: Content
    tool_call_id: str


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantTurn | ToolMessage


class FunctionDefinition(msgspec.Struct, kw_only=True):
    name: Annotated[str, Meta(pattern=FUNCTION_NAME)]
    description: str = ""
    parameters: Annotated[dict[str, Any], Meta(description="a JSON Schema of the arguments, an object")] = (
        msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    )
    strict: bool | None = None


class FunctionTool(msgspec.Struct, kw_only=True):
    """A tool the client runs itself: when the model calls it, the answer hands the call back."""

    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class ToolChoiceFunction(msgspec.Struct, kw_only=True):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchemaFormat(msgspec.Struct, kw_only=True):
    name: str
    schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})
    description: str | None = None
    strict: bool | None = None


class TextFormat(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    pass


class JsonObjectFormat(msgspec.Struct, kw_only=True, tag_field="type", tag="json_object"):
    """The answer is a JSON object."""


class JsonSchemaResponse(msgspec.Struct, kw_only=True, tag_field="type", tag="json_schema"):
    """The answer is JSON that fits the schema, enforced while the model writes it."""

    json_schema: JsonSchemaFormat


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaResponse


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionCreate(msgspec.Struct, kw_only=True):
    """Sampling settings (temperature, top_p, max_tokens, ...) are accepted and
    left to the administrator's model configuration; unknown fields are ignored,
    as clients send many."""

    model: str
    messages: Annotated[
        list[ChatMessage],
        rule(
            minItems=1,
            description="the conversation, ending with the user's question or a tool's result; only system "
            "messages are a task, answered by the model alone",
        ),
    ]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, rule(minimum=1, maximum=1, description="the agent writes one answer")] = 1
    user: (
        Annotated[str, Meta(max_length=256, description="the person asking, kept with the run; not a conversation")]
        | None
    ) = None
    tools: Annotated[list[FunctionTool], Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    functions: Annotated[list[dict[str, Any]] | None, NO_FUNCTIONS] = None
    # This appliance's own: the knowledge bases to answer from (default: the
    # conversation's choice, else all of the tenant's).
    knowledge_bases: list[str] | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(msgspec.Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCall] | None = None


class Choice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "tool_calls"] = "stop"


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


# Embeddings -----------------------------------------------------------------


class EmbeddingCreate(msgspec.Struct, kw_only=True):
    model: Annotated[
        str, rule("the embedding model, as GET /v1/models lists it with its dimensions", enum=[EMBEDDING_MODEL])
    ]
    # Checked by the service, so that token arrays get a message of their own.
    input: Annotated[
        str | list[Any],
        rule(
            description="a text, or a list of texts (at most 2048); token arrays are not supported",
            anyOf=[
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048},
            ],
        ),
    ]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int | None, rule("the model's own, or leave it out", enum=[384, None])] = None
    user: str | None = None


class Embedding(msgspec.Struct):
    index: int
    embedding: Annotated[list[float] | str, rule(description="floats, or base64 of little-endian float32")]
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"
