"""Assistants, the Agent Server's way: create, read, change (a new version
each time), pin a version, delete, search and count; each one's schemas and
graph. An assistant is named by its id or its name."""

from __future__ import annotations

from typing import Any

import msgspec
from langgraph.graph.state import CompiledStateGraph
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from appliance.agent.context import schema as context_schema
from appliance.agent.graph import GRAPH_ID
from appliance.api.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionChange,
    AssistantVersionsSearch,
)
from appliance.services.assistants import AssistantService
from appliance.store.assistants import AssistantQuery, AssistantRecord
from appliance.store.audit import Actor


def fields_of(data: AssistantCreate | AssistantPatch) -> dict[str, Any]:
    """The request's fields as the service takes them (config as the plain object it stores)."""
    fields = msgspec.structs.asdict(data)
    if data.config is not None:
        fields["config"] = msgspec.to_builtins(data.config)
    return fields


def query_of(data: AssistantSearch | AssistantCount) -> AssistantQuery:
    if isinstance(data, AssistantCount):
        return AssistantQuery(graph_id=data.graph_id, name=data.name, metadata=data.metadata)
    return AssistantQuery(
        graph_id=data.graph_id,
        name=data.name,
        metadata=data.metadata,
        limit=data.limit,
        offset=data.offset,
        sort_by=data.sort_by,
        descending=data.sort_order == "desc",
    )


class AssistantController(Controller):
    path = "/assistants"
    tags = ["assistants"]

    @post("/", status_code=200, summary="Create an assistant")
    async def create(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        data: JSONBody[AssistantCreate],
    ) -> AssistantRecord:
        return await assistants.create(tenant, **fields_of(data), actor=actor)

    @post("/search", status_code=200, summary="Search assistants (the built-in one first)")
    async def search(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        data: JSONBody[AssistantSearch],
    ) -> list[AssistantRecord]:
        return await assistants.search(tenant, query_of(data))

    @post("/count", status_code=200, summary="Count assistants")
    async def count(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        data: JSONBody[AssistantCount],
    ) -> int:
        return await assistants.count(tenant, query_of(data))

    @get("/{assistant_id:str}", summary="An assistant, at its current version")
    async def read(
        self, assistants: NamedDependency[AssistantService], tenant: NamedDependency[str], assistant_id: FromPath[str]
    ) -> AssistantRecord:
        return await assistants.get(tenant, assistant_id)

    @patch("/{assistant_id:str}", summary="Change an assistant: a new version, made the current one")
    async def update(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        assistant_id: FromPath[str],
        data: JSONBody[AssistantPatch],
    ) -> AssistantRecord:
        return await assistants.update(tenant, assistant_id, **fields_of(data), actor=actor)

    @delete("/{assistant_id:str}", status_code=204, summary="Delete an assistant and all its versions")
    async def remove(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        assistant_id: FromPath[str],
    ) -> None:
        await assistants.delete(tenant, assistant_id, actor)

    @post("/{assistant_id:str}/versions", status_code=200, summary="An assistant's versions, newest first")
    async def versions(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        assistant_id: FromPath[str],
        data: JSONBody[AssistantVersionsSearch],
    ) -> list[AssistantRecord]:
        return await assistants.versions(tenant, assistant_id, data.metadata, data.limit, data.offset)

    @post("/{assistant_id:str}/latest", status_code=200, summary="Make a version of the assistant the current one")
    async def pin(
        self,
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        assistant_id: FromPath[str],
        data: JSONBody[AssistantVersionChange],
    ) -> AssistantRecord:
        return await assistants.pin(tenant, assistant_id, data.version, actor)

    @get("/{assistant_id:str}/schemas", summary="The assistant's input, output, state and context schemas")
    async def read_schemas(
        self,
        graph: NamedDependency[CompiledStateGraph],
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        assistant_id: FromPath[str],
    ) -> dict[str, Any]:
        await assistants.get(tenant, assistant_id)
        return {
            "graph_id": GRAPH_ID,
            "input_schema": graph.get_input_jsonschema(),
            "output_schema": graph.get_output_jsonschema(),
            "state_schema": graph.get_output_jsonschema(),
            "config_schema": {
                "title": "Configurable",
                "type": "object",
                "properties": {
                    "review_queries": {
                        "type": "boolean",
                        "description": "Pause before each search so a person can approve or edit the query",
                    },
                },
            },
            # Generated from the graph's own context_schema (AssistantContext).
            "context_schema": context_schema(graph.context_schema),
        }

    @get("/{assistant_id:str}/graph", summary="The assistant's graph: nodes and edges")
    async def read_graph(
        self,
        graph: NamedDependency[CompiledStateGraph],
        assistants: NamedDependency[AssistantService],
        tenant: NamedDependency[str],
        assistant_id: FromPath[str],
    ) -> dict[str, Any]:
        await assistants.get(tenant, assistant_id)
        return graph.get_graph().to_json()
