"""API keys: ``x-api-key: KEY`` or ``Authorization: Bearer KEY``.

Every route needs a key unless its handler is marked ``exclude_from_auth``
(health checks and the API docs). A thread belongs to its key's tenant.
Every authenticated request is counted against its key's and its tenant's
requests a minute; a failed authentication is written to the audit log.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from appliance.runtime import Runtime
from appliance.store.keys import ApiKey


def presented_key(connection: ASGIConnection) -> str | None:
    if key := connection.headers.get("x-api-key"):
        return key.strip()
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def client_address(connection: ASGIConnection) -> str | None:
    return connection.client.host if connection.client else None


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        runtime: Runtime = connection.app.state.runtime
        secret = presented_key(connection)
        if not secret:
            await runtime.audit.failed_authentication(client_address(connection), "no key")
            raise NotAuthorizedException(
                "an API key is required: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        admission = await runtime.keys.admit(secret)
        if admission is None:
            await runtime.audit.failed_authentication(client_address(connection), "unknown or revoked key")
            raise NotAuthorizedException(
                "the API key is not valid (unknown or revoked)", headers={"WWW-Authenticate": "Bearer"}
            )
        runtime.limits.check_requests(admission)
        return AuthenticationResult(user=admission.key, auth=secret)


def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if connection.scope["method"] == "OPTIONS":
        return  # answered without a key (CORS preflight); it reveals nothing
    key: ApiKey = connection.user
    if not key.is_admin:
        raise PermissionDeniedException("this needs an admin API key")
