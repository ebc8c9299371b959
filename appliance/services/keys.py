"""API keys as admins manage them, and the first admin key of a new appliance."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from appliance.errors import Conflict, Invalid, NotFound
from appliance.store.audit import Actor
from appliance.store.keys import Admission, ApiKey, KeyStore, LastAdminKey, OwnKey

TENANT_MAX = 64
# ASCII only: a tenant name is an identifier in logs, metrics and metadata.
TENANT_PATTERN = rf"^[A-Za-z0-9._-]{{1,{TENANT_MAX}}}$"


def check_tenant(tenant: str) -> str:
    tenant = tenant.strip()
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise Invalid(f"tenant must be 1 to {TENANT_MAX} ASCII letters, digits, '-', '_' or '.' (got {tenant!r})")
    return tenant


class KeyService:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def create(self, tenant: str, *, name: str = "", is_admin: bool = False, actor: Actor) -> tuple[ApiKey, str]:
        return await self.store.create(check_tenant(tenant), name=name, is_admin=is_admin, actor=actor)

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        return await self.store.list(tenant)

    async def revoke(self, key_id: uuid.UUID, *, actor: Actor) -> ApiKey:
        try:
            key = await self.store.revoke(key_id, actor)
        except LastAdminKey:
            raise Conflict(
                f"API key {key_id} is the last active admin key; create another admin key first, then revoke this one"
            ) from None
        except OwnKey:
            # Most likely a slip (the wrong id pasted); either way the caller would lock itself out mid-request.
            raise Conflict(
                f"API key {key_id} is the key this request is signed with, and a key cannot revoke itself; "
                "revoke it with another admin key, or on the host with 'appliance keys revoke'"
            ) from None
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        return key

    async def authenticate(self, secret: str) -> ApiKey | None:
        return await self.store.authenticate(secret)

    async def admit(self, secret: str) -> Admission | None:
        """A request's key, with the request counted (``Limits.check_requests`` says whether it may go on)."""
        return await self.store.admit(secret)

    async def bootstrap_admin(self, path: Path) -> str | None:
        """On a new appliance (no keys at all), create an admin key and save it
        to a file only this user can read. Returns the key, or None."""
        if await self.store.count():
            return None
        _, secret = await self.store.create("default", name="first admin key", is_admin=True, actor=Actor.host())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        os.chmod(path, 0o600)
        return secret
