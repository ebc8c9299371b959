"""Webhooks: when a run ends, POST the run to the URL its creator gave.

A destination must resolve only to addresses inside ``webhook_allowed_networks``
(loopback and the private ranges by default), checked when the run is created
and again, on the address actually dialled, at every delivery, so the
appliance cannot be made to reach anywhere else. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from appliance.errors import Invalid
from appliance.network import Network, allowed_address, pinned

log = logging.getLogger(__name__)


class Webhooks:
    def __init__(self, allowed: list[Network], *, attempts: int = 4, backoff_s: float = 1.0) -> None:
        self.allowed = allowed
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sending: set[asyncio.Task[None]] = set()

    async def check(self, url: str) -> str:
        """The address ``url`` reaches, or Invalid saying why it may not be used."""
        return await allowed_address(url, self.allowed, what="webhook", setting="APPLIANCE_WEBHOOK_ALLOWED_NETWORKS")

    def send(self, url: str, body: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(url, body), name="webhook")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            try:
                address = await self.check(url)
                target, headers = pinned(url, address)
                async with httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False) as client:
                    response = await client.post(target, json=body, headers=headers)
                if response.status_code < 300:
                    return
                reason = f"answered {response.status_code}"
            except Invalid as exc:
                log.error("webhook not sent: %s", exc.message, extra={"run_id": body.get("run_id")})
                return
            except httpx.HTTPError as exc:
                reason = repr(exc)
            log.warning(
                "webhook %s %s (attempt %d of %d)",
                url,
                reason,
                attempt + 1,
                self.attempts,
                extra={"run_id": body.get("run_id")},
            )
            await asyncio.sleep(self.backoff_s * 2**attempt)
