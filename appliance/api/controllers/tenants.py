"""A tenant's rate limits, for admins."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from appliance.api.auth import admin_only
from appliance.api.schemas import LimitsUpdate, TenantLimits
from appliance.runtime import Runtime
from appliance.services.keys import TENANT_PATTERN
from appliance.store.audit import Actor

# Checked by Litestar against the pattern (400 naming tenant_name), and described, so
# that a client (or a fuzzer) knows a tenant's name before it is refused.
TenantName = Annotated[str, PathParameter(pattern=TENANT_PATTERN, description="the tenant's name")]


class TenantController(Controller):
    path = "/tenants/{tenant_name:str}"
    tags = ["tenants"]
    guards = [admin_only]

    @get("/limits", summary="The tenant's rate limits in force, and which are its own")
    async def limits(self, runtime: NamedDependency[Runtime], tenant_name: TenantName) -> TenantLimits:
        return await _view(runtime, tenant_name)

    @put("/limits", summary="Set the tenant's own rate limits (a limit left out takes the appliance's setting)")
    async def set_limits(
        self,
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        tenant_name: TenantName,
        data: JSONBody[LimitsUpdate],
    ) -> TenantLimits:
        await runtime.limits.set_tenant(tenant_name, msgspec.structs.asdict(data), actor)
        return await _view(runtime, tenant_name)


async def _view(runtime: Runtime, tenant: str) -> TenantLimits:
    limits, own = await runtime.limits.of_tenant(tenant)
    return TenantLimits(tenant=tenant, limits=limits, own=own)
