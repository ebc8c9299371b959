"""A scripted chat model: deterministic answers, every prompt recorded, and
tokens counted as words, so assertions about prompts can be exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from appliance.agent.memory import SUMMARIZER_INSTRUCTIONS
from appliance.agent.rag_prompts import GRADE_INSTRUCTIONS, REWRITE_INSTRUCTIONS
from appliance.llm.provider import LanguageModel

# The internal prompts the graph sends, by the instructions they start with.
PROMPT_KINDS = {
    SUMMARIZER_INSTRUCTIONS: "summary",
    GRADE_INSTRUCTIONS: "grade",
    REWRITE_INSTRUCTIONS: "rewrite",
}


def word_count(text: str) -> int:
    return len(text.split())


def prompt_kind(messages: list[BaseMessage]) -> str:
    """summary, grade, rewrite, or answer."""
    first = messages[0].text if messages else ""
    return next((kind for start, kind in PROMPT_KINDS.items() if first.startswith(start)), "answer")


def is_summary_prompt(messages: list[BaseMessage]) -> bool:
    return prompt_kind(messages) == "summary"


def default_reply(messages: list[BaseMessage], calls: int) -> str:
    kind = prompt_kind(messages)
    if kind == "summary":
        return f"summary-{calls} " + "fact " * 20
    if kind == "grade":
        return "yes"
    if kind == "rewrite":
        return "rewritten query"
    return f"reply-{calls} to your message, noted and understood."


class ScriptedChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    reply: Callable[[list[BaseMessage], int], str] = default_reply
    delay: float = 0.0
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    replies: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        text = self._record(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        text = self._record(messages)
        for i, word in enumerate(text.split(" ")):
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = word if i == 0 else " " + word
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        pieces = [c.text async for c in self._astream(messages, stop, run_manager)]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(pieces)))])

    def _record(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(list(messages))
        self.replies.append(self.reply(messages, len(self.prompts)))
        return self.replies[-1]

    def answer_prompts(self) -> list[list[BaseMessage]]:
        return [p for p in self.prompts if prompt_kind(p) == "answer"]


# A scripted model plays every role deterministically, so it is trusted with them all.
EVERY_ROLE = frozenset({"decide", "rewrite", "generate"})


def scripted_language_model(
    chat: BaseChatModel | None = None, name: str = "scripted", capabilities: frozenset[str] = EVERY_ROLE
) -> LanguageModel:
    """Every role of the model played by one chat model (which tells them apart by
    the prompt); ``capabilities`` says which of them the agent asks it for."""
    chat = chat or ScriptedChatModel()

    async def check() -> str:
        return f"{name} model"

    return LanguageModel(
        name=name,
        where="test",
        answer=chat,
        summarizer=chat,
        rewriter=chat,
        decider=lambda choices: chat,
        count_tokens=word_count,
        check=check,
        capabilities=capabilities,
    )
