"""ASGI-level backpressure. Under ASGI, Django runs each request's sync code in a thread of its
own, and each such thread takes a database connection from the pool. Without a bound, a burst
of requests (a fleet of agents heartbeating) starts hundreds of threads that wait on the GIL
while holding connections, the pool runs dry and requests fail after its timeout. Bounding
in-flight requests per process makes the excess wait cheaply in the event loop instead."""

import asyncio
from typing import Any

Scope = dict[str, Any]


class BoundedConcurrency:
    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # created on the server's event loop
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            await self.app(scope, receive, send)


class BrowserOriginValidator:
    """WebSocket origin check for sockets that authenticate by API key. A browser always sends
    `Origin`: it must be one of ALLOWED_HOSTS (Channels' AllowedHostsOriginValidator rules).
    A request without `Origin` comes from a non-browser client (an SDK, a server), which
    carries no ambient cookies to hijack, so it is let through to its key check."""

    def __init__(self, app: Any) -> None:
        from channels.security.websocket import AllowedHostsOriginValidator

        self.app = app
        self.browser_checked = AllowedHostsOriginValidator(app)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if any(name == b"origin" for name, _ in scope.get("headers", [])):
            await self.browser_checked(scope, receive, send)
        else:
            await self.app(scope, receive, send)
