"""The chat models an assistant may choose, by name.

The appliance's configured model, and with Ollama every other model the
manifest pins (the bundle loads them). They share one gate: one server's
capacity, however many models it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import msgspec

from appliance.llm.provider import LanguageModel, build_language_model
from appliance.manifest import load_manifest
from appliance.settings import Settings


class ModelCatalog:
    def __init__(
        self, default: LanguageModel, others: Iterable[str] = (), build: Callable[[str], LanguageModel] | None = None
    ) -> None:
        self.default = default
        self._build = build
        self._others = [n for n in dict.fromkeys(others) if n != default.name] if build else []
        self._built: dict[str, LanguageModel] = {default.name: default}

    def names(self) -> list[str]:
        return [self.default.name, *self._others]

    def has(self, name: str) -> bool:
        return name in self._built or name in self._others

    def get(self, name: str) -> LanguageModel:
        """The model of that name; an empty name is the default one."""
        if not name:
            return self.default
        if name not in self._built:
            if not self.has(name) or self._build is None:
                raise KeyError(name)
            self._built[name] = dataclasses.replace(self._build(name), gate=self.default.gate)
        return self._built[name]


def catalog_for(settings: Settings, model: LanguageModel) -> ModelCatalog:
    """``model`` (the configured one), and with Ollama the models the manifest pins for it."""
    if settings.provider != "ollama":
        return ModelCatalog(model)
    pinned = [load_manifest(settings.manifest_path).chat.production.ollama_model]

    def build(name: str) -> LanguageModel:
        return build_language_model(msgspec.structs.replace(settings, ollama_model=name, model_capabilities=None))

    return ModelCatalog(model, pinned, build)
