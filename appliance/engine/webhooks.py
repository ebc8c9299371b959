"""Webhooks: when a run ends, POST the run to the URL its creator gave.

A destination must resolve only to addresses inside ``webhook_allowed_networks``
(loopback and the private ranges by default), checked when the run is created
and again, on the address actually dialled, at every delivery, so the
appliance cannot be made to reach anywhere else. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from appliance.errors import Invalid

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Webhooks:
    def __init__(self, allowed: list[Network], *, attempts: int = 4, backoff_s: float = 1.0) -> None:
        self.allowed = allowed
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sending: set[asyncio.Task[None]] = set()

    async def check(self, url: str) -> str:
        """The address ``url`` reaches, or Invalid saying why it may not be used."""
        try:
            parts = urlsplit(url)
        except ValueError:  # an unclosed IPv6 bracket, say
            raise Invalid(f"webhook {url!r} is not a URL") from None
        try:
            port = parts.port
        except ValueError:
            raise Invalid(f"webhook {url!r} has a port that is not a number from 0 to 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"webhook {url!r} must be an http:// or https:// URL")
        try:
            infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, port or 80)
        except (socket.gaierror, UnicodeError):  # UnicodeError: no host name can be spelt so (IDNA)
            raise Invalid(f"webhook host {parts.hostname!r} cannot be resolved on this network") from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
        outside = sorted(str(a) for a in addresses if not any(a in net for net in self.allowed))
        if outside:
            raise Invalid(
                f"webhook {url!r} resolves to {', '.join(outside)}, outside the networks this appliance may "
                f"call ({', '.join(map(str, self.allowed))}); an administrator can change "
                f"APPLIANCE_WEBHOOK_ALLOWED_NETWORKS"
            )
        return str(min(addresses, key=str))

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


def pinned(url: str, address: str) -> tuple[str, dict[str, str]]:
    """For plain http, dial the checked address itself (a second lookup could
    answer differently); https keeps the name, which its certificate binds."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return url, {}
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}
