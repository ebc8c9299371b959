"""The HTTP client the terminal commands use with a running appliance: its key,
no proxy from the environment (the appliance is on the LAN), and, for an
install's HTTPS, the CA certificate the admin was handed."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Coroutine
from typing import Any

import httpx


def api_client(url: str, key: str, *, timeout_s: float, ca_file: str | None = None) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    return httpx.AsyncClient(
        base_url=url.rstrip("/"),
        headers={"x-api-key": key},
        timeout=httpx.Timeout(timeout_s, connect=5),
        trust_env=False,
        verify=verify,
    )


def run_remote(command: Coroutine[Any, Any, int], url: str | None) -> int:
    """Run a terminal command; an appliance it cannot reach is a message and exit status 2, not a traceback."""
    try:
        return asyncio.run(command)
    except httpx.ConnectError as exc:
        hint = " (pass the install's CA certificate with --ca-file)" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else ""
        print(f"appliance: cannot connect to {url}: {exc}{hint}", file=sys.stderr)
        return 2
