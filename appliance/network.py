"""Where the appliance may dial: a URL checked against a list of networks.

Webhooks and tool servers both go only to addresses inside networks an admin
allowed (loopback and the private ranges by default). The check resolves the
name and refuses when any address it gives is outside; callers dial the
address it returns (``pinned``), so a second lookup cannot answer otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from appliance.errors import Invalid

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


async def allowed_address(url: str, allowed: list[Network], *, what: str, setting: str) -> str:
    """The address ``url`` reaches, or Invalid saying why it may not be used
    (``what`` names the URL's role in the message, ``setting`` the variable that widens the list)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        raise Invalid(f"{what} {url!r} is not a URL") from None
    try:
        port = parts.port
    except ValueError:
        raise Invalid(f"{what} {url!r} has a port that is not a number from 0 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{what} {url!r} must be an http:// or https:// URL")
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, port or 80)
    except (socket.gaierror, UnicodeError):  # UnicodeError: no host name can be spelt so (IDNA)
        raise Invalid(f"{what} host {parts.hostname!r} cannot be resolved on this network") from None
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    outside = sorted(str(a) for a in addresses if not any(a in net for net in allowed))
    if outside:
        raise Invalid(
            f"{what} {url!r} resolves to {', '.join(outside)}, outside the networks this appliance may "
            f"call ({', '.join(map(str, allowed))}); an administrator can change {setting}"
        )
    return str(min(addresses, key=str))


def pinned(url: str, address: str) -> tuple[str, dict[str, str]]:
    """For plain http, dial the checked address itself (a second lookup could
    answer differently); https keeps the name, which its certificate binds."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return url, {}
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}
