"""Rate limits as callers meet them: requests per minute and uploads in flight
per key and per tenant (runs in flight are admitted by the run store), each
tenant's own limits, and the 429 that names the limit reached."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from appliance.errors import Invalid, RateLimited
from appliance.settings import Settings
from appliance.store.audit import Actor
from appliance.store.keys import Admission
from appliance.store.limits import LIMIT_NAMES, LimitSet, LimitStore, OverLimit, effective, over

log = logging.getLogger(__name__)

_WHAT = {
    "requests_per_minute": "requests a minute",
    "runs_in_flight": "runs pending or running at once",
    "uploads_in_flight": "uploads being ingested at once",
}


def defaults_from(settings: Settings) -> LimitSet:
    return LimitSet(**{name: getattr(settings, f"limit_{name}") for name in LIMIT_NAMES})


def rate_limited(exc: OverLimit, tenant: str) -> RateLimited:
    """The 429 a caller gets: which limit, its value, and what to do."""
    scope, _, kind = exc.name.partition("_")
    whose = "this API key" if scope == "key" else f"tenant {tenant!r}"
    return RateLimited(
        f"rate limit reached: {whose} may have {exc.limit} {_WHAT[kind]} ({exc.name}); "
        f"try again in {exc.retry_after_s} s, or ask an admin to raise the tenant's limits",
        limit=exc.name,
        retry_after=exc.retry_after_s,
    )


class Limits:
    def __init__(self, store: LimitStore, defaults: LimitSet) -> None:
        self.store = store
        self.defaults = defaults

    def check_requests(self, admission: Admission) -> None:
        """RateLimited when the request just counted (``KeyService.admit``) puts its key
        or its tenant over their requests a minute."""
        limits, counted = effective(self.defaults, admission.overrides), admission.requests
        for name, count in (("key_requests_per_minute", counted.key), ("tenant_requests_per_minute", counted.tenant)):
            limit = getattr(limits, name)
            if over(limit, count):
                raise rate_limited(OverLimit(name, limit, counted.retry_after_s), admission.key.tenant)

    @asynccontextmanager
    async def uploading(self, key_id: uuid.UUID | None, tenant: str) -> AsyncIterator[None]:
        """Hold an upload slot while a document is ingested."""
        async with AsyncExitStack() as held:
            try:  # only the slot's admission: an OverLimit from the body is not this 429
                await held.enter_async_context(self.store.upload_slot(key_id, tenant, self.defaults))
            except OverLimit as exc:
                raise rate_limited(exc, tenant) from None
            yield

    async def of_tenant(self, tenant: str) -> tuple[LimitSet, dict[str, int]]:
        """The tenant's limits in force, and those of them that are its own."""
        overrides = await self.store.overrides(tenant)
        return effective(self.defaults, overrides), overrides

    async def set_tenant(self, tenant: str, limits: dict[str, Any], actor: Actor) -> dict[str, int]:
        """Set the tenant's own limits (a None value: back to the appliance's setting)."""
        own: dict[str, int] = {}
        for name, value in limits.items():
            if name not in LIMIT_NAMES:
                raise Invalid(f"{name} is not a limit; the limits are {', '.join(LIMIT_NAMES)}", param=name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1_000_000:
                raise Invalid(f"{name} must be a whole number from 0 (no limit) to 1000000", param=name)
            own[name] = value
        return await self.store.set_overrides(tenant, own, actor)

    async def keep_pruning(self, every_s: float = 60) -> None:
        """Forget ended request windows and expired upload slots, every minute."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.store.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the next round prunes
                log.warning("could not prune rate-limit counters: %r", exc)
