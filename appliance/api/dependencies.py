"""What handlers get injected: the runtime or the one service a handler needs,
the caller's tenant, and the caller as the audit log names it."""

from __future__ import annotations

from langgraph.graph.state import CompiledStateGraph
from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from appliance.api.auth import client_address
from appliance.runtime import Runtime
from appliance.services.assistants import AssistantService
from appliance.services.embeddings import EmbeddingService
from appliance.services.tool_servers import ToolServerService
from appliance.store.audit import Actor
from appliance.store.keys import ApiKey


def provide_runtime(state: State) -> Runtime:
    return state.runtime


def provide_assistants(state: State) -> AssistantService:
    return state.runtime.assistants


def provide_graph(state: State) -> CompiledStateGraph:
    return state.runtime.graph


def provide_embeddings(state: State) -> EmbeddingService:
    return state.runtime.embeddings


def provide_tool_servers(state: State) -> ToolServerService:
    return state.runtime.tool_servers


def provide_tenant(request: Request[ApiKey, str, State]) -> str:
    return request.user.tenant


def provide_actor(request: Request[ApiKey, str, State]) -> Actor:
    key = request.user
    name = f"key:{key.prefix}" + (f" ({key.name})" if key.name else "")
    return Actor(name=name, key_id=key.key_id, tenant=key.tenant, source=client_address(request))


DEPENDENCIES = {
    "runtime": Provide(provide_runtime, sync_to_thread=False),
    "tenant": Provide(provide_tenant, sync_to_thread=False),
    "assistants": Provide(provide_assistants, sync_to_thread=False),
    "actor": Provide(provide_actor, sync_to_thread=False),
    "embeddings": Provide(provide_embeddings, sync_to_thread=False),
    "graph": Provide(provide_graph, sync_to_thread=False),
    "tool_servers": Provide(provide_tool_servers, sync_to_thread=False),
}
