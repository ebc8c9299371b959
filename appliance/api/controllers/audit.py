"""The audit log, for admins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appliance.api.auth import admin_only
from appliance.errors import Invalid
from appliance.runtime import Runtime
from appliance.store.audit import AuditEvent


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]
    guards = [admin_only]

    @get("/", summary="Who created or revoked keys, created or deleted knowledge bases and documents, "
         "changed limits, or failed to authenticate: oldest first")  # fmt: skip
    async def events(
        self,
        runtime: NamedDependency[Runtime],
        since: Annotated[
            str | None,
            QueryParameter(
                description="only events at or after this time (ISO 8601, e.g. 2026-12-01T09:00:00Z)",
                schema_extra={"format": "date-time"},
            ),
        ] = None,
        of_tenant: Annotated[
            str | None, QueryParameter(name="tenant", description="events of this tenant, or by its keys")
        ] = None,
        action: Annotated[str | None, QueryParameter(description="e.g. key.created, document.deleted")] = None,
        after: Annotated[int, QueryParameter(ge=0, description="the last event_id seen, to page on")] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[AuditEvent]:
        return await runtime.audit.list(
            since=_moment(since), tenant=of_tenant, action=action, limit=limit, after_id=after
        )


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 date and time (UTC when it names no offset); not a bare number."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"since must be an ISO 8601 date and time, e.g. 2026-12-01T09:00:00Z (got {text!r})", param="since"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
