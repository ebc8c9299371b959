"""``appliance keys create|list|revoke``"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

from appliance.errors import ServiceError
from appliance.runtime import open_database
from appliance.services.keys import KeyService
from appliance.settings import Settings
from appliance.store.audit import Actor
from appliance.store.keys import KeyStore


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    async with open_database(settings) as (pool, _):
        service = KeyService(KeyStore(pool))
        if args.action == "create":
            key, secret = await service.create(args.tenant, name=args.name, is_admin=args.admin, actor=Actor.host())
            role = "admin key" if key.is_admin else "key"
            print(f"created {role} {key.key_id} for tenant {key.tenant!r}; it is shown only now:")
            print(secret)
        elif args.action == "list":
            for key in await service.list(args.tenant):
                state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                role = "admin" if key.is_admin else "user"
                print(f"{key.key_id}  {key.prefix}…  {key.tenant:<16} {role:<5}  {state:<22} {key.name}")
        elif args.action == "revoke":
            try:
                key_id = uuid.UUID(args.key_id)
            except ValueError:
                print(
                    f"appliance: {args.key_id!r} is not a key id (a UUID, see 'appliance keys list')", file=sys.stderr
                )
                return 2
            key = await service.revoke(key_id, actor=Actor.host())
            print(f"revoked {key.key_id} ({key.tenant})")
        elif args.action == "bootstrap-admin":
            if await service.bootstrap_admin(Path(args.output)):
                print(f"created the first admin key (tenant 'default') in {args.output}")
            else:
                print("keys exist already; nothing to do")
    return 0


def keys(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_keys(settings, args))
    except ServiceError as exc:
        print(f"appliance: {exc.message}", file=sys.stderr)
        return 2
