"""One run's assistant, as its nodes use it: the context, its model and its memory policy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from langchain_core.language_models.chat_models import BaseChatModel
from langgraph.runtime import get_runtime

from appliance.agent.context import AssistantContext
from appliance.agent.memory import MemoryPolicy
from appliance.llm.catalog import ModelCatalog
from appliance.llm.errors import ModelNotFound
from appliance.llm.provider import LanguageModel


@dataclass(frozen=True)
class Configured:
    context: AssistantContext
    model: LanguageModel
    policy: MemoryPolicy

    @property
    def answer(self) -> BaseChatModel:
        return self.model.answering(self.context.temperature, self.context.max_tokens)


class Configurator:
    """Builds a run's ``Configured`` from its context (none given: the built-in
    assistant's, over no knowledge base)."""

    def __init__(self, models: ModelCatalog, policy: MemoryPolicy, defaults: AssistantContext) -> None:
        self.models = models
        self.policy = policy
        # Without a run's context nothing resolved "every knowledge base" to a
        # tenant's ids (the run service does): such a call searches none.
        self.defaults = dataclasses.replace(defaults, knowledge_bases=[])

    def __call__(self, context: AssistantContext | None) -> Configured:
        context = context or self.defaults
        try:
            model = self.models.get(context.model)
        except KeyError:  # queued by a process configured with other models than this one
            raise ModelNotFound(
                f"the run asks for the model {context.model!r}, which this appliance process does not have; "
                f"it has {', '.join(self.models.names())}"
            ) from None
        policy = dataclasses.replace(
            self.policy,
            system_prompt=context.instructions,
            token_budget=context.memory_token_budget,
            count_tokens=model.count_tokens,
        )
        return Configured(context, model, policy)

    def current(self) -> Configured:
        """Inside a node or an edge: the run's own. A state update (``as_node``)
        routes its edges outside any run: the built-in assistant's then."""
        runtime = get_runtime(AssistantContext)
        return self(runtime.context if runtime is not None else None)
