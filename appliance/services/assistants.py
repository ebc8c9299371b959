"""Assistants as a tenant sees them: the built-in ``agent`` (read-only, every
tenant's default) and the tenant's own, created, changed (each change a new
version), pinned to a version, and chosen by every client.

An assistant is named by its id or its name wherever one is asked for.
What it configures is the graph's context (``appliance.agent.context``);
everything it sets is checked here, before anything is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema
import msgspec

from appliance import __version__
from appliance.agent import context as contexts
from appliance.agent.context import AssistantContext, ContextError
from appliance.agent.graph import GRAPH_ID
from appliance.engine.jsonable import integral
from appliance.errors import Conflict, Invalid, NotFound
from appliance.llm.catalog import ModelCatalog
from appliance.services.embeddings import MODEL_ID as EMBEDDING_MODEL
from appliance.services.knowledge import KnowledgeService
from appliance.store.assistants import (
    AssistantDraft,
    AssistantExists,
    AssistantQuery,
    AssistantRecord,
    AssistantStore,
    NameTaken,
)
from appliance.store.audit import Actor
from appliance.tools.toolbox import Toolbox

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
# The built-in assistant's id, derived from the graph id the way LangGraph's
# server derives the id of a graph's default assistant.
ASSISTANT_ID = str(uuid.uuid5(NAMESPACE_GRAPH, GRAPH_ID))
_CREATED = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG_KEYS = ("configurable", "tags", "recursion_limit")


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a JSON Schema, or None."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


class Chosen(msgspec.Struct, frozen=True):
    """The assistant a run uses: which one, at which version, and what it sets."""

    assistant_id: str
    version: int
    context: dict[str, Any]  # as stored: the fields it sets, knowledge bases as ids


class AssistantService:
    def __init__(
        self,
        store: AssistantStore,
        knowledge: KnowledgeService,
        models: ModelCatalog,
        defaults: AssistantContext,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.store = store
        self.toolbox = toolbox
        self.knowledge = knowledge
        self.models = models
        self.defaults = defaults

    def built_in(self) -> AssistantRecord:
        return AssistantRecord(
            assistant_id=uuid.UUID(ASSISTANT_ID),
            graph_id=GRAPH_ID,
            name=GRAPH_ID,
            description="The appliance's agent: conversation memory and answers from knowledge bases, with citations",
            config={},
            context=msgspec.to_builtins(self.defaults) | {"model": self.models.default.name},
            metadata={"created_by": "system", "version": __version__},
            version=1,
            created_at=_CREATED,
            updated_at=_CREATED,
        )

    # Reading -------------------------------------------------------------------

    async def get(self, tenant: str, ref: str) -> AssistantRecord:
        """The tenant's assistant of that id or name (or the built-in one); 404 otherwise."""
        if ref in (GRAPH_ID, ASSISTANT_ID):
            return self.built_in()
        found = await self._find(tenant, ref)
        if found is None:
            raise NotFound(f"assistant {ref!r} not found; GET /assistants/search lists this tenant's assistants")
        return found

    async def _find(self, tenant: str, ref: str) -> AssistantRecord | None:
        try:
            by_id = await self.store.get(tenant, uuid.UUID(ref))
        except ValueError:
            by_id = None
        return by_id or await self.store.named(tenant, ref)

    async def search(self, tenant: str, query: AssistantQuery) -> list[AssistantRecord]:
        """The tenant's assistants; the built-in one, when it matches, comes first whatever the order."""
        if not self._built_in_matches(query):
            return await self.store.search(tenant, query)
        if query.offset == 0:
            own = await self.store.search(tenant, msgspec.structs.replace(query, limit=max(query.limit - 1, 0)))
            return [self.built_in(), *own][: query.limit]
        return await self.store.search(tenant, msgspec.structs.replace(query, offset=query.offset - 1))

    async def count(self, tenant: str, query: AssistantQuery) -> int:
        return await self.store.count(tenant, query) + self._built_in_matches(query)

    def _built_in_matches(self, query: AssistantQuery) -> bool:
        one = self.built_in()
        return (
            query.graph_id in (None, GRAPH_ID)
            and (not query.name or query.name.lower() in one.name)
            and all(one.metadata.get(k) == v for k, v in (query.metadata or {}).items())
        )

    async def versions(
        self, tenant: str, ref: str, metadata: dict[str, Any] | None, limit: int, offset: int
    ) -> list[AssistantRecord]:
        found = await self.get(tenant, ref)
        if str(found.assistant_id) == ASSISTANT_ID:
            return [found] if offset == 0 and limit > 0 else []
        return await self.store.versions(tenant, found.assistant_id, metadata, limit, offset)

    # Changing ------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        *,
        graph_id: str,
        name: str | None,
        assistant_id: uuid.UUID | None = None,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        if_exists: Literal["raise", "do_nothing"] = "raise",
        actor: Actor,
    ) -> AssistantRecord:
        assistant_id = assistant_id or uuid.uuid4()
        if str(assistant_id) == ASSISTANT_ID:
            if if_exists == "do_nothing":
                return self.built_in()
            raise Conflict(f"assistant {assistant_id} is the built-in one, which exists already", param="assistant_id")
        draft = await self._draft(
            tenant,
            graph_id=graph_id,
            name=name or f"assistant-{str(assistant_id)[:8]}",
            description=description,
            config=config or {},
            context=context or {},
            metadata=metadata or {},
        )
        try:
            return await self.store.create(tenant, assistant_id, draft, actor)
        except AssistantExists as exc:
            if exc.existing is not None and if_exists == "do_nothing":
                return exc.existing
            raise Conflict(f"assistant {assistant_id} already exists", param="assistant_id") from None
        except NameTaken:
            raise self._name_taken(draft.name) from None

    async def update(
        self,
        tenant: str,
        ref: str,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        actor: Actor,
    ) -> AssistantRecord:
        """A new version: what is given replaces the current version's (metadata is merged into it)."""
        current = await self._own(tenant, ref, "changed")
        draft = await self._draft(
            tenant,
            graph_id=graph_id if graph_id is not None else current.graph_id,
            name=name if name is not None else current.name,
            description=description if description is not None else current.description,
            config=config if config is not None else current.config,
            context=context if context is not None else current.context,
            metadata=current.metadata | (metadata or {}),
        )
        try:
            changed = await self.store.update(tenant, current.assistant_id, lambda _now: draft, actor)
        except NameTaken:
            raise self._name_taken(draft.name) from None
        if changed is None:
            raise NotFound(f"assistant {ref!r} not found")
        return changed

    async def pin(self, tenant: str, ref: str, version: int, actor: Actor) -> AssistantRecord:
        current = await self._own(tenant, ref, "pinned to another version")
        try:
            pinned = await self.store.pin(tenant, current.assistant_id, version, actor)
        except NameTaken as exc:
            raise self._name_taken(str(exc)) from None
        if pinned is None:
            raise NotFound(f"assistant {ref!r} has no version {version}", param="version")
        return pinned

    async def delete(self, tenant: str, ref: str, actor: Actor) -> None:
        current = await self._own(tenant, ref, "deleted")
        if not await self.store.delete(tenant, current.assistant_id, actor):
            raise NotFound(f"assistant {ref!r} not found")

    async def _own(self, tenant: str, ref: str, change: str) -> AssistantRecord:
        found = await self.get(tenant, ref)
        if str(found.assistant_id) == ASSISTANT_ID:
            raise Conflict(
                f"the built-in assistant {GRAPH_ID!r} cannot be {change}; create your own with POST /assistants",
                param="assistant_id",
            )
        return found

    @staticmethod
    def _name_taken(name: str) -> Conflict:
        return Conflict(f"this tenant already has an assistant named {name!r}; choose another name", param="name")

    async def _draft(
        self,
        tenant: str,
        *,
        graph_id: str,
        name: str,
        description: str | None,
        config: dict[str, Any],
        context: dict[str, Any],
        metadata: dict[str, Any],
    ) -> AssistantDraft:
        if graph_id != GRAPH_ID:
            raise Invalid(f"graph_id must be {GRAPH_ID!r}, the appliance's one graph", param="graph_id")
        name = name.strip()
        if name == GRAPH_ID or not name:
            raise Invalid(f"name must be set, and not {GRAPH_ID!r} (the built-in assistant's)", param="name")
        if name == EMBEDDING_MODEL:
            raise Invalid(f"name {name!r} is the embedding model's, as GET /v1/models lists it", param="name")
        try:
            uuid.UUID(name)
        except ValueError:
            pass
        else:
            raise Invalid("name must not be a UUID: clients name assistants by id or by name", param="name")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            named = ", ".join(f"config.{key}" for key in unknown)
            raise Invalid(f"{named}: not taken; config takes {', '.join(CONFIG_KEYS)}", param=f"config.{unknown[0]}")
        configurable = config.get("configurable") or {}
        if not isinstance(configurable, dict):
            raise Invalid("config.configurable must be an object of assistant settings", param="config.configurable")
        checked = await self.checked_context(tenant, configurable, "config.configurable")
        config = config | ({"configurable": checked} if configurable else {})
        return AssistantDraft(
            graph_id=graph_id,
            name=name,
            description=description,
            config=config,
            context=await self.checked_context(tenant, context, "context"),
            metadata=metadata,
        )

    async def checked_context(self, tenant: str, changes: dict[str, Any], where: str) -> dict[str, Any]:
        """``changes`` to the built-in assistant's context, checked: in range, a
        model this appliance has, knowledge bases of this tenant (stored as ids)."""
        changes = integral(changes)  # JSON Schema's integer includes 10.0
        try:
            contexts.overlay(self.defaults, changes, where)
        except ContextError as exc:
            raise Invalid(str(exc), param=exc.field) from None
        checked = dict(changes)
        schemas = [(f"{where}.client_tools[{i}].parameters", f.get("parameters"))
                   for i, f in enumerate(changes.get("client_tools") or [])]  # fmt: skip
        if changes.get("response_schema") is not None:
            schemas.append((f"{where}.response_schema", changes["response_schema"]))
        for field_name, schema in schemas:
            if schema is not None and (problem := schema_problem(schema)):
                raise Invalid(f"{field_name} is not a JSON Schema: {problem}", param=field_name)
        if changes.get("model") and not self.models.has(changes["model"]):
            # As OpenAI's model_not_found: a model that does not exist here.
            has = ", ".join(self.models.names())
            raise NotFound(
                f"{where}.model: this appliance has no model {changes['model']!r}; it has {has}", param=f"{where}.model"
            )
        if changes.get("tools"):
            if self.toolbox is None:
                raise Invalid(f"{where}.tools: this appliance has no tools", param=f"{where}.tools")
            await self.toolbox.check(changes["tools"], tenant, f"{where}.tools")
        if "knowledge_bases" in changes and changes["knowledge_bases"] != [contexts.ALL_KNOWLEDGE_BASES]:
            checked["knowledge_bases"] = await self.knowledge.resolve(
                tenant, changes["knowledge_bases"], f"{where}.knowledge_bases"
            )
        return checked

    # Runs ----------------------------------------------------------------------

    async def for_run(self, tenant: str, ref: str) -> Chosen:
        found = await self.get(tenant, ref)
        own = {} if str(found.assistant_id) == ASSISTANT_ID else found.context
        configurable = (found.config or {}).get("configurable") or {}
        return Chosen(str(found.assistant_id), found.version, configurable | own)

    async def settings_of(self, tenant: str, ref: str) -> AssistantContext:
        """What an assistant sets, over the defaults (its knowledge bases as it names them)."""
        try:
            return contexts.overlay(self.defaults, (await self.for_run(tenant, ref)).context)
        except ContextError as exc:  # an assistant stored before a limit changed
            raise Invalid(f"the assistant's settings are no longer valid: {exc}", param=exc.field) from None

    async def run_context(
        self,
        tenant: str,
        chosen: Chosen,
        changes: dict[str, Any],
        knowledge_bases: list[str] | None,
        every_base: list[str] | None = None,
    ) -> AssistantContext:
        """The whole context a run carries: the defaults, its assistant's, the
        run's own ``changes``; ``knowledge_bases`` (already resolved) when the
        run or its thread chose them, else the assistant's, resolved now
        (``every_base``: the tenant's knowledge bases, when already read)."""
        overrides = await self.checked_context(tenant, changes, "context") if changes else {}
        merged = chosen.context | overrides
        if knowledge_bases is None:
            knowledge_bases = await self.knowledge.resolve(
                tenant,
                merged.get("knowledge_bases", self.defaults.knowledge_bases),
                "the assistant's knowledge_bases",
                lenient=True,  # deleted since the assistant chose them: not the caller's fault
                every=every_base,
            )
        try:
            return contexts.overlay(self.defaults, merged | {"knowledge_bases": knowledge_bases})
        except ContextError as exc:  # an assistant stored before a limit changed
            raise Invalid(f"the assistant's settings are no longer valid: {exc}", param=exc.field) from None
