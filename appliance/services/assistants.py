"""The appliance's one assistant: its agent graph, as the Agent Server lists it.

Clients may name it by graph id ("agent") or by its assistant id, which is
derived from the graph id the way LangGraph's server derives the id of a
graph's default assistant.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from appliance import __version__
from appliance.agent.graph import GRAPH_ID
from appliance.errors import NotFound

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = str(uuid.uuid5(NAMESPACE_GRAPH, GRAPH_ID))
_CREATED = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


def resolve_assistant(assistant_id: str) -> str:
    if assistant_id not in (GRAPH_ID, ASSISTANT_ID):
        raise NotFound(f"assistant {assistant_id!r} not found; this appliance serves {GRAPH_ID!r} ({ASSISTANT_ID})")
    return ASSISTANT_ID


def assistant() -> dict[str, Any]:
    return {
        "assistant_id": ASSISTANT_ID,
        "graph_id": GRAPH_ID,
        "name": GRAPH_ID,
        "description": "The appliance's agent: conversation memory and answers from knowledge bases, with citations",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system", "version": __version__},
        "version": 1,
        "created_at": _CREATED,
        "updated_at": _CREATED,
    }


def schemas(graph: CompiledStateGraph) -> dict[str, Any]:
    return {
        "graph_id": GRAPH_ID,
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": graph.get_output_jsonschema(),
        "state_schema": graph.get_output_jsonschema(),
        "config_schema": {
            "title": "Configurable",
            "type": "object",
            "properties": {
                "knowledge_bases": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Knowledge bases (ids or names) the agent searches; "
                    "defaults to the thread's metadata.knowledge_bases",
                },
                "review_queries": {
                    "type": "boolean",
                    "description": "Pause before each search so a person can approve or edit the query",
                },
            },
        },
        "context_schema": None,
    }


def drawing(graph: CompiledStateGraph) -> dict[str, Any]:
    return graph.get_graph().to_json()
