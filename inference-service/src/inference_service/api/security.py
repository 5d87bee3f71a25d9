"""Client identity: API keys (X-API-Key) when configured, otherwise everyone is `anonymous`."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any, Final

from connexion.security import ApiKeySecurityHandler

ANONYMOUS: Final = "anonymous"


def key_checker(clients_by_key: Mapping[str, str]) -> Callable[..., dict[str, str] | None]:
    """The `x-apikeyInfoFunc` Connexion calls: the client for a key, None for an unknown one."""
    keys = [(key.encode(), client) for key, client in clients_by_key.items()]

    def check(apikey: str, required_scopes: Any = None) -> dict[str, str] | None:
        given = apikey.encode()
        found = None
        for key, client in keys:
            # Compare against every key, in constant time, to leak nothing through timing.
            if hmac.compare_digest(given, key):
                found = client
        return {"sub": found} if found else None

    return check


def api_key_handler(clients_by_key: Mapping[str, str]) -> type[ApiKeySecurityHandler]:
    """A security handler bound to this app's keys (no module globals, one per app)."""
    checker = key_checker(clients_by_key)

    class BoundApiKeyHandler(ApiKeySecurityHandler):  # type: ignore[misc]
        def _resolve_func(self, security_scheme: Any) -> Callable[..., Any]:
            return checker

    return BoundApiKeyHandler


def owner_of(user: str | None) -> str:
    return user or ANONYMOUS
