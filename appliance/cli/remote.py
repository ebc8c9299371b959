"""The HTTP client the terminal commands use with a running appliance: its key,
no proxy from the environment (the appliance is on the LAN), and, for an
install's HTTPS, the CA certificate the admin was handed; and the one reader
of a run's event stream, which the tests and benchmarks use too."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import httpx

from appliance.settings import Settings


async def read_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, Any]]:
    """The (event, data) pairs of a server-sent event stream (``response.aiter_lines()``),
    as ``appliance.api.sse`` frames them; ids and heartbeat comments are passed over."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield event, json.loads(line[len("data: ") :])


class MissingKey(Exception):
    """No API key was given for a running appliance."""


def read_key(args: argparse.Namespace, settings: Settings) -> str:
    """The key: --key, else APPLIANCE_API_KEY, else the file of --key-file (default: the admin key's)."""
    if args.key:
        return args.key
    if key := os.environ.get("APPLIANCE_API_KEY"):
        return key
    path = Path(args.key_file) if args.key_file else settings.admin_key_path
    if path.is_file():
        return path.read_text().strip()
    raise MissingKey


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
    except MissingKey:
        print("appliance: give an API key with --key, --key-file or APPLIANCE_API_KEY", file=sys.stderr)
        return 2
    except httpx.ConnectError as exc:
        hint = " (pass the install's CA certificate with --ca-file)" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else ""
        print(f"appliance: cannot connect to {url}: {exc}{hint}", file=sys.stderr)
        return 2


class Refused(Exception):
    """The appliance said no; the message says why."""


async def call_api(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    """One request of a command to a running appliance: its JSON, or Refused with the detail."""
    response = await client.request(method, path, json=body)
    if response.status_code >= 400:
        raise Refused(response.json().get("detail", response.text))
    return response.json() if response.content else None


async def call_service(call: Coroutine[Any, Any, Any]) -> Any:
    """The same for a service of an appliance opened in this process."""
    import msgspec

    from appliance.errors import ServiceError

    try:
        return msgspec.to_builtins(await call)
    except ServiceError as exc:
        raise Refused(exc.message) from None
