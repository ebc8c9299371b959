"""The OpenAI-compatible API: ``GET /v1/models``, ``POST /v1/chat/completions``
(streamed or not) and ``POST /v1/embeddings``, for the tools people already use. Keys are sent as
``Authorization: Bearer KEY``, as OpenAI's clients do."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from array import array
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody

from appliance.api.errors import openai_type
from appliance.api.lane import STARTS_TURN
from appliance.api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionCreate,
    Choice,
    Embedding,
    EmbeddingCreate,
    EmbeddingList,
    EmbeddingModel,
    EmbeddingUsage,
    FunctionCall,
    FunctionDefinition,
    JsonObjectFormat,
    JsonSchemaResponse,
    Model,
    ModelList,
    OpenAIError,
    OpenAIErrorBody,
    ResponseFormat,
    ToolCall,
    ToolChoiceFunction,
    Usage,
)
from appliance.api.sse import EventStream, with_heartbeat
from appliance.errors import ApplianceError, Invalid
from appliance.runtime import Runtime
from appliance.services.assistants import schema_problem
from appliance.services.embeddings import MODEL_ID as EMBEDDING_MODEL
from appliance.services.embeddings import Embedded, EmbeddingService
from appliance.services.openai_chat import ChatAnswer, ChatRequest, ChatTurn, OpenAIChatService
from appliance.store.assistants import AssistantRecord
from appliance.store.audit import Actor

CONVERSATION_HEADER = "X-Conversation-Id"
# Open WebUI's chat id, sent when its administrator forwards user info (ENABLE_FORWARD_USER_INFO_HEADERS).
OPEN_WEBUI_CHAT_HEADER = "X-OpenWebUI-Chat-Id"
_encode = msgspec.json.Encoder().encode


def to_request(data: ChatCompletionCreate, conversation: str | None) -> ChatRequest:
    if data.model == EMBEDDING_MODEL:
        raise Invalid(f"{EMBEDDING_MODEL} is an embedding model: use POST /v1/embeddings", param="model")
    if data.n != 1:
        raise Invalid("n must be 1: the agent writes one answer", param="n")
    if data.functions:
        raise Invalid("functions is the legacy form of tools: send tools instead", param="functions")
    tools = [checked_function(t.function, i) for i, t in enumerate(data.tools or [])]
    return ChatRequest(
        model=data.model,
        messages=[msgspec.to_builtins(m) for m in data.messages],  # each with its role
        conversation=conversation,
        end_user=data.user,
        knowledge_bases=data.knowledge_bases,
        tools=tools,
        tool_choice=tool_choice_of(data.tool_choice, {t["name"] for t in tools}),
        parallel_tool_calls=data.parallel_tool_calls,
        streamed=bool(data.stream),
        **response_format_of(data.response_format),
    )


def response_format_of(wanted: ResponseFormat | None) -> dict[str, Any]:
    if isinstance(wanted, JsonObjectFormat):
        return {"response_format": "json_object"}
    if not isinstance(wanted, JsonSchemaResponse):
        return {}
    schema, where = wanted.json_schema.schema, "response_format.json_schema.schema"
    if problem := schema_problem(schema):
        raise Invalid(f"{where} is not a JSON Schema: {problem}", param=where)
    return {"response_format": "json_schema", "response_schema": schema}


def checked_function(function: FunctionDefinition, index: int) -> dict[str, Any]:
    """A client's function as the agent takes it; its parameters must be a JSON Schema of an object."""
    where = f"tools[{index}].function.parameters"
    if problem := schema_problem(function.parameters):
        raise Invalid(f"{where} is not a JSON Schema: {problem}", param=where)
    if function.parameters.get("type", "object") != "object":
        raise Invalid(f"{where} must describe an object (type: object)", param=where)
    return {"name": function.name, "description": function.description, "parameters": function.parameters}


def tool_choice_of(choice: str | ToolChoiceFunction | None, names: set[str]) -> str:
    """OpenAI's tool_choice as the agent's: auto, none, required or function:NAME."""
    if isinstance(choice, ToolChoiceFunction):
        if choice.function.name not in names:
            raise Invalid(
                f"tool_choice names {choice.function.name!r}, which is not among the tools sent", param="tool_choice"
            )
        return f"function:{choice.function.name}"
    if choice == "required" and not names:
        raise Invalid("tool_choice is required but no tools were sent", param="tool_choice")
    return choice or "auto"


def wire_calls(calls: list[dict[str, Any]]) -> list[ToolCall]:
    """Calls as OpenAI's clients read them: arguments as a JSON string."""
    return [
        ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=json.dumps(c.get("args") or {})))
        for c in calls
    ]


def to_completion(turn: ChatTurn, answer: ChatAnswer) -> ChatCompletion:
    return ChatCompletion(
        id=turn.completion_id,
        created=turn.created,
        model=turn.model,
        choices=[
            Choice(
                index=0,
                message=AssistantMessage(content=answer.text, tool_calls=wire_calls(answer.tool_calls) or None),
                finish_reason="tool_calls" if answer.tool_calls else "stop",
            )
        ],
        usage=usage(answer),
        conversation_id=None if turn.stateless else str(turn.run.thread_id),
        citations=answer.citations,
        degraded=answer.degraded,
    )


def usage(answer: ChatAnswer) -> Usage:
    total = answer.prompt_tokens + answer.completion_tokens
    return Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens, total_tokens=total)


def conversation_headers(turn: ChatTurn) -> dict[str, str]:
    return {} if turn.stateless else {CONVERSATION_HEADER: str(turn.run.thread_id)}


async def completion_chunks(service: OpenAIChatService, turn: ChatTurn, include_usage: bool) -> AsyncIterator[bytes]:
    """The answer as ``chat.completion.chunk`` events, then ``[DONE]``; an
    error after the stream began is sent as OpenAI sends one, ``{"error": ...}``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if delta is not None else []
        body = {
            "id": turn.completion_id,
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + _encode(body) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for text in service.deltas(turn):
            yield chunk({"content": text})
    except ApplianceError as exc:
        error = OpenAIError(message=exc.message, type=openai_type(exc.status), code=exc.code)
        yield b"data: " + _encode(OpenAIErrorBody(error)) + b"\n\n"
        return
    answer = turn.answer or ChatAnswer(text="")
    # Each call as OpenAI frames it: its id, type and name first, then its arguments.
    for index, call in enumerate(wire_calls(answer.tool_calls)):
        opening = {"index": index, "id": call.id, "type": "function",
                   "function": {"name": call.function.name, "arguments": ""}}  # fmt: skip
        yield chunk({"tool_calls": [opening]})
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": call.function.arguments}}]})
    extra = {"degraded": answer.degraded} if answer.degraded else {}
    finish = "tool_calls" if answer.tool_calls else "stop"
    yield chunk({}, finish, citations=answer.citations, **extra)
    if include_usage:
        yield chunk(None, usage=usage(answer))  # type: ignore[arg-type]
    yield b"data: [DONE]\n\n"


def as_model(assistant: AssistantRecord) -> Model:
    return Model(id=assistant.name, created=int(assistant.created_at.timestamp()))


def embedding_model(embeddings: EmbeddingService) -> EmbeddingModel:
    return EmbeddingModel(id=EMBEDDING_MODEL, created=0, dimensions=embeddings.dimensions)


def to_embedding_list(embedded: Embedded, encoding_format: str) -> EmbeddingList:
    def encoded(vector: list[float]) -> list[float] | str:
        if encoding_format == "float":
            return vector
        floats = array("f", vector)
        if sys.byteorder == "big":
            floats.byteswap()  # OpenAI's base64 is little-endian float32
        return base64.b64encode(floats.tobytes()).decode()

    return EmbeddingList(
        data=[Embedding(index=i, embedding=encoded(v)) for i, v in enumerate(embedded.vectors)],
        model=EMBEDDING_MODEL,
        usage=EmbeddingUsage(prompt_tokens=embedded.tokens, total_tokens=embedded.tokens),
    )


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai-compatible"]

    @get("/models", summary="The tenant's assistants, by name, as OpenAI lists models; then the embedding model")
    async def models(
        self,
        runtime: NamedDependency[Runtime],
        embeddings: NamedDependency[EmbeddingService],
        tenant: NamedDependency[str],
    ) -> ModelList:
        assistants = [as_model(a) for a in await runtime.openai.models(tenant)]
        return ModelList(data=[*assistants, embedding_model(embeddings)])

    @get("/models/{model:str}", summary="An assistant, or the embedding model, as OpenAI shows a model")
    async def model(
        self,
        runtime: NamedDependency[Runtime],
        embeddings: NamedDependency[EmbeddingService],
        tenant: NamedDependency[str],
        model: FromPath[str],
    ) -> Model:
        if model == EMBEDDING_MODEL:
            return embedding_model(embeddings)
        return as_model(await runtime.openai.require_model(tenant, model))

    @post("/embeddings", status_code=200, summary="Embeddings with the model the knowledge bases are searched with")
    async def embed(
        self, embeddings: NamedDependency[EmbeddingService], data: JSONBody[EmbeddingCreate]
    ) -> EmbeddingList:
        embedded = await embeddings.embed(data.model, data.input, data.dimensions)
        return to_embedding_list(embedded, data.encoding_format)

    @post(
        "/chat/completions",
        status_code=200,
        opt={"calls_model": True, "streams_when_asked": True, **STARTS_TURN},
        summary="A chat completion from the agent; name a conversation (X-Conversation-Id) to keep memory",
    )
    async def chat_completions(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        data: JSONBody[ChatCompletionCreate],
        conversation: Annotated[str | None, HeaderParameter(name=CONVERSATION_HEADER)] = None,
        open_webui_chat: Annotated[str | None, HeaderParameter(name=OPEN_WEBUI_CHAT_HEADER)] = None,
    ) -> Response:
        service = runtime.openai
        turn = await service.start(tenant, to_request(data, conversation or open_webui_chat), key_id=actor.key_id)
        if not data.stream:
            try:
                answer = await service.answer(turn)
            finally:
                await asyncio.shield(service.finish(turn))
            return Response(to_completion(turn, answer), headers=conversation_headers(turn))

        include_usage = bool(data.stream_options and data.stream_options.include_usage)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in with_heartbeat(
                    completion_chunks(service, turn, include_usage),
                    heartbeat_s=runtime.settings.stream_heartbeat_s,
                    on_early_close=lambda: service.abandon(turn),
                ):
                    yield piece
            finally:
                await asyncio.shield(service.finish(turn))

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", **conversation_headers(turn)}
        return EventStream(body(), headers=headers)
