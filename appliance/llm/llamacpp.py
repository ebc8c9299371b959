"""The embedded provider: a GGUF model run in-process by llama.cpp.

llama.cpp is not thread-safe, so one lock guards the loaded model; generation
runs in a worker thread so the event loop never blocks, and tokens cross back
to the loop through a queue as they are produced.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from appliance.llm.tool_calls import as_call_text, parse_tool_call, tool_call_grammar, tools_prompt

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class LoadedLlama:
    """One llama.cpp model in memory, shared by every chat model that uses it."""

    def __init__(self, model_path: str, n_ctx: int, n_threads: int | None) -> None:
        from llama_cpp import Llama

        self.model_path = model_path
        self.llama = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self.lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=True))


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """As the chat template takes them; a past tool call as the JSON the model wrote."""
    return [
        {"role": _ROLES.get(m.type, "user"), "content": m.text or as_call_text(getattr(m, "tool_calls", None) or [])}
        for m in messages
    ]


def with_tools(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> list[BaseMessage]:
    """The system prompt followed by the tools and how to call them."""
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(f"{messages[0].text}\n\n{tools_prompt(tools)}"), *messages[1:]]
    return [SystemMessage(tools_prompt(tools)), *messages]


def usage_chunk(usage: dict[str, int]) -> ChatGenerationChunk:
    """The last chunk of an answer: no text, the token counts."""
    counts = UsageMetadata(
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        total_tokens=usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
    )
    return ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=counts))


class LlamaCppChatModel(BaseChatModel):
    """A LangChain chat model over a :class:`LoadedLlama`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    loaded: LoadedLlama
    max_tokens: int = 256
    temperature: float = 0.2
    # A GBNF grammar that constrains decoding (used for decisions).
    grammar: str | None = None
    # Tools bound (OpenAI's function shape): the reply is one call of one, or an answer.
    tools: list[dict[str, Any]] | None = None

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> LlamaCppChatModel:
        """This model, made to answer with a tool call or in plain words (a grammar, not a hope)."""
        bound = [convert_to_openai_tool(t) for t in tools]
        return self.model_copy(update={"tools": bound or None, "max_tokens": max(self.max_tokens, 256)})

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.loaded.model_path, "max_tokens": self.max_tokens}

    def get_num_tokens(self, text: str) -> int:
        return self.loaded.count_tokens(text)

    def _pieces(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancelled: threading.Event,
        usage: dict[str, int],
    ) -> Iterator[str]:
        if self.tools:
            messages = with_tools(messages, self.tools)
        chat = to_chat_messages(messages)
        usage["input_tokens"] = sum(self.loaded.count_tokens(m["content"]) + 4 for m in chat)
        grammar = None
        rules = tool_call_grammar(self.tools) if self.tools else self.grammar
        if rules:
            from llama_cpp import LlamaGrammar

            grammar = LlamaGrammar.from_string(rules, verbose=False)
        with self.loaded.lock:
            stream = self.loaded.llama.create_chat_completion(
                messages=chat,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stop=stop,
                stream=True,
                grammar=grammar,
            )
            for chunk in stream:
                if cancelled.is_set():
                    break
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    usage["output_tokens"] = usage.get("output_tokens", 0) + 1
                    yield piece

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        usage: dict[str, int] = {}
        for piece in self._pieces(messages, stop, threading.Event(), usage):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield usage_chunk(usage)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        usage: dict[str, int] = {}
        text = "".join(self._pieces(messages, stop, threading.Event(), usage))
        call = parse_tool_call(text) if self.tools else None
        message = AIMessage(
            content="" if call else text, tool_calls=[call] if call else [],
            usage_metadata=usage_chunk(usage).message.usage_metadata,
        )  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()
        usage: dict[str, int] = {}

        def produce() -> None:
            try:
                for piece in self._pieces(messages, stop, cancelled, usage):
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, produce)
        # With tools, the reply is held until its first visible character says
        # what it is: "{" opens a call, given whole at the end; anything else streams.
        held: list[str] = []
        streaming = not self.tools
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if not streaming:
                    held.append(item)
                    start = "".join(held).lstrip()
                    if not start or start.startswith("{"):
                        continue
                    item, held, streaming = "".join(held), [], True
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                if run_manager:
                    await run_manager.on_llm_new_token(item, chunk=chunk)
                yield chunk
            if held:
                yield self._held(held)
            yield usage_chunk(usage)
        finally:
            # A cancelled run (client gone, run interrupted) stops generation at the next token.
            cancelled.set()
            await asyncio.shield(worker)

    @staticmethod
    def _held(held: list[str]) -> ChatGenerationChunk:
        """The reply kept back: a tool call, or (cut off by the token limit) its text."""
        text = "".join(held)
        call = parse_tool_call(text)
        if call is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=text))
        arguments = json.dumps(call["args"])
        calls = [{"name": call["name"], "args": arguments, "id": call["id"], "index": 0}]
        return ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=calls))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [c async for c in self._astream(messages, stop, run_manager, **kwargs)]
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged += chunk
        message = AIMessage(
            content=merged.text, tool_calls=getattr(merged.message, "tool_calls", []),
            usage_metadata=merged.message.usage_metadata,
        )  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])
