"""The audit log, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appliance.api.auth import admin_only
from appliance.api.schemas import AuditEvent
from appliance.runtime import Runtime


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]
    guards = [admin_only]

    @get("/", summary="Who created or revoked keys, created or deleted knowledge bases and documents, "
         "changed limits, or failed to authenticate: oldest first")  # fmt: skip
    async def events(
        self,
        runtime: NamedDependency[Runtime],
        since: Annotated[datetime | None, QueryParameter(description="only events at or after this time")] = None,
        of_tenant: Annotated[
            str | None, QueryParameter(name="tenant", description="events of this tenant, or by its keys")
        ] = None,
        action: Annotated[str | None, QueryParameter(description="e.g. key.created, document.deleted")] = None,
        after: Annotated[int, QueryParameter(ge=0, description="the last event_id seen, to page on")] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[AuditEvent]:
        found = await runtime.audit.list(since=since, tenant=of_tenant, action=action, limit=limit, after_id=after)
        return [AuditEvent(**msgspec.structs.asdict(event)) for event in found]
