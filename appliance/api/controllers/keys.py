"""API keys, for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from appliance.api.auth import admin_only
from appliance.api.schemas import KeyCreate, KeyCreated, KeyInfo
from appliance.runtime import Runtime
from appliance.store.audit import Actor
from appliance.store.keys import ApiKey


def to_info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=key.key_id,
        tenant=key.tenant,
        name=key.name,
        prefix=key.prefix,
        admin=key.is_admin,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


class KeyController(Controller):
    path = "/keys"
    tags = ["keys"]
    guards = [admin_only]

    @get("/", summary="List API keys (never their secrets)")
    async def list_keys(
        self, runtime: NamedDependency[Runtime], of_tenant: Annotated[str | None, QueryParameter(name="tenant")] = None
    ) -> list[KeyInfo]:
        return [to_info(k) for k in await runtime.keys.list(of_tenant)]

    @post("/", status_code=201, summary="Create an API key; the secret is shown only in this answer")
    async def create(
        self, runtime: NamedDependency[Runtime], actor: NamedDependency[Actor], data: JSONBody[KeyCreate]
    ) -> KeyCreated:
        key, secret = await runtime.keys.create(data.tenant, name=data.name, is_admin=data.admin, actor=actor)
        return KeyCreated(key=secret, info=to_info(key))

    @delete("/{key_id:uuid}", status_code=200, summary="Revoke an API key")
    async def revoke(
        self, runtime: NamedDependency[Runtime], actor: NamedDependency[Actor], key_id: FromPath[uuid.UUID]
    ) -> KeyInfo:
        return to_info(await runtime.keys.revoke(key_id, actor=actor))
