"""ASGI-level backpressure. Under ASGI, Django runs each request's sync code in a thread of its
own, and each such thread takes a database connection from the pool. Without a bound, a burst
of requests (a fleet of agents heartbeating) starts hundreds of threads that wait on the GIL
while holding connections, the pool runs dry and requests fail after its timeout. Bounding
in-flight requests per process makes the excess wait cheaply in the event loop instead.

Waiting is bounded too: a request that cannot start within `queue_timeout_s` is shed with a
503 and a `Retry-After`, before it has touched the database, so an overloaded process answers
fast and cheaply instead of timing every request out (agents back off on it). Liveness
(`/healthz`) bypasses the bound: an overloaded process is still alive."""

import asyncio
import json
from typing import Any

Scope = dict[str, Any]

BYPASS_PATHS = frozenset({"/healthz"})


class BoundedConcurrency:
    def __init__(
        self, app: Any, limit: int, queue_timeout_s: float = 0, retry_after_s: int = 1
    ) -> None:
        self.app = app
        self.limit = limit
        self.queue_timeout_s = queue_timeout_s  # 0: wait as long as it takes
        self.retry_after_s = retry_after_s
        self.shed = 0  # requests answered 503 since start (for logs and benchmarks)
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope.get("path") in BYPASS_PATHS:
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # created on the server's event loop
            self._semaphore = asyncio.Semaphore(self.limit)
        semaphore = self._semaphore
        if self.queue_timeout_s > 0:
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=self.queue_timeout_s)
            except TimeoutError:
                self.shed += 1
                await self._overloaded(send)
                return
        else:
            await semaphore.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            semaphore.release()

    async def _overloaded(self, send: Any) -> None:
        body = json.dumps(
            {
                "error": {
                    "status": 503,
                    "code": "overloaded",
                    "message": "The server is overloaded; retry after the Retry-After delay.",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
