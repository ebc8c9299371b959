"""``appliance audit [--since] [--tenant] [--action]``: the audit log, read on the host."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta

import msgspec

from appliance.runtime import open_database
from appliance.settings import Settings
from appliance.store.audit import AuditEvent, AuditStore

_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date or time (UTC unless it says otherwise), or an age such as 30m, 2h or 7d."""
    now = now or datetime.now(UTC)
    if match := _AGE.match(text.strip()):
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give an ISO date or time (2026-12-01T09:00) or an age (30m, 2h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def line(event: AuditEvent) -> str:
    detail = " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
    where = f" [{event.tenant}]" if event.tenant else ""
    target = f" {event.target}" if event.target else ""
    source = f" from {event.source}" if event.source else ""
    at = f"{event.at:%Y-%m-%d %H:%M:%S%z}"
    return f"{at}  {event.action:<24}{where}{target}  by {event.actor}{source}  {detail}".rstrip()


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    async with open_database(settings) as (pool, _):
        events = await AuditStore(pool).list(since=since, tenant=args.tenant, action=args.action, limit=args.limit)
    for event in events:
        print(msgspec.json.encode(event).decode() if args.json else line(event))
    return 0


def audit(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_audit(settings, args))
    except ValueError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 2
