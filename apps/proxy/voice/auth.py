"""Deployment-key authentication for the `/ws/*` voice sockets (before any consumer runs).

The key comes from `?api_key=sk_…` (browsers cannot set headers on a WebSocket), or an
`Authorization: Bearer sk_…` / `X-API-Key` header on the upgrade request. The middleware only
resolves it: `scope["voice_identity"]` is the key's identity or None, and the consumer closes a
None with 4401 before reading anything."""

from typing import Any
from urllib.parse import parse_qs

from apps.proxy.routing import InvalidKeyError, router


def raw_key_from_scope(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin1")
            if text.lower().startswith("bearer "):
                return text[7:].strip() or None
        elif name == b"x-api-key":
            return value.decode("latin1").strip() or None
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    keys = query.get("api_key")
    return keys[0] if keys else None


class DeploymentKeyAuthMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        try:
            scope["voice_identity"] = await router.authenticate(raw_key_from_scope(scope))
            scope["voice_auth_error"] = ""
        except InvalidKeyError as exc:
            scope["voice_identity"] = None
            scope["voice_auth_error"] = exc.message
        return await self.app(scope, receive, send)
