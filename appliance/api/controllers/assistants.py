"""The assistant: one agent graph, listed the way LangGraph's Agent Server
lists assistants so the SDK can find it, read its schemas and draw it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from appliance.agent.graph import GRAPH_ID
from appliance.api.schemas import AssistantSearch
from appliance.runtime import Runtime
from appliance.services.assistants import assistant, drawing, resolve_assistant, schemas


def matches(query: AssistantSearch) -> bool:
    one = assistant()
    return (
        query.graph_id in (None, GRAPH_ID)
        and query.name in (None, GRAPH_ID)
        and all(one["metadata"].get(k) == v for k, v in (query.metadata or {}).items())
    )


class AssistantController(Controller):
    path = "/assistants"
    tags = ["assistants"]

    @post("/search", status_code=200, summary="Search assistants")
    async def search(self, data: JSONBody[AssistantSearch]) -> list[dict[str, Any]]:
        return [assistant()] if matches(data) and data.offset == 0 else []

    @post("/count", status_code=200, summary="Count assistants")
    async def count(self, data: JSONBody[AssistantSearch]) -> int:
        return 1 if matches(data) else 0

    @get("/{assistant_id:str}", summary="An assistant")
    async def read(self, assistant_id: FromPath[str]) -> dict[str, Any]:
        resolve_assistant(assistant_id)
        return assistant()

    @get("/{assistant_id:str}/schemas", summary="The assistant's input, output, state and config schemas")
    async def read_schemas(self, runtime: NamedDependency[Runtime], assistant_id: FromPath[str]) -> dict[str, Any]:
        resolve_assistant(assistant_id)
        return schemas(runtime.graph)

    @get("/{assistant_id:str}/graph", summary="The assistant's graph: nodes and edges")
    async def read_graph(self, runtime: NamedDependency[Runtime], assistant_id: FromPath[str]) -> dict[str, Any]:
        resolve_assistant(assistant_id)
        return drawing(runtime.graph)
