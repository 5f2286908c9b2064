"""API keys with scopes. Keys come from settings, are compared in constant time, never logged."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from features.settings import ApiKey

SCOPES = ("crm", "marketing", "admin")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def find_key(presented: str, keys: list[ApiKey]) -> ApiKey | None:
    """The configured key matching `presented`; every key is compared, in constant time."""
    found = None
    for candidate in keys:
        if hmac.compare_digest(candidate.key.get_secret_value().encode(), presented.encode()):
            found = candidate
    return found


class RequireScope:
    """Dependency admitting keys that grant `scope`: 401 without a valid key, 403 without the scope.

    A class rather than a closure so that the scope a route needs can be read off its
    dependencies (the auth tests walk every route this way).
    """

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}: expected one of {SCOPES}")
        self.scope = scope

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"

    async def __call__(
        self, request: Request, presented: Annotated[str | None, Depends(api_key_header)]
    ) -> ApiKey:
        if not presented:
            raise HTTPException(
                401, "missing API key (header X-API-Key)", headers={"WWW-Authenticate": "ApiKey"}
            )
        key = find_key(presented, request.app.state.settings.api_keys)
        if key is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})
        if self.scope not in key.scopes:
            raise HTTPException(403, f"this key lacks the '{self.scope}' scope")
        request.state.key_name = key.name
        return key


def require(scope: str) -> RequireScope:
    """The dependency admitting keys that grant `scope`."""
    return RequireScope(scope)
