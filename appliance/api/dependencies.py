"""What handlers get injected: the runtime and the caller's tenant."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from appliance.runtime import Runtime
from appliance.store.keys import ApiKey


def provide_runtime(state: State) -> Runtime:
    return state.runtime


def provide_tenant(request: Request[ApiKey, str, State]) -> str:
    return request.user.tenant


DEPENDENCIES = {
    "runtime": Provide(provide_runtime, sync_to_thread=False),
    "tenant": Provide(provide_tenant, sync_to_thread=False),
}
