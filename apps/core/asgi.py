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
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from apps.core.errors import error_body
from apps.core.middleware import DOCS_CSP, PERMISSIONS_POLICY, STRICT_CSP

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

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


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


class BufferedChunkedBody:
    """A request body sent without Content-Length (`Transfer-Encoding: chunked`) reaches Django
    as an empty body: Django reads Content-Length bytes, and a missing one counts as 0, so the
    view sees `{}` and answers a misleading 400. This reads such a body as it streams, counting
    bytes, and refuses it with a 413 once it passes MAX_REQUEST_BODY_BYTES (having read at most
    the limit plus one chunk); a body within the limit is handed on with its Content-Length
    set, so every view and middleware sees it as if it had been sent with one. Requests that
    declare a Content-Length pass untouched (RequestBodyLimitMiddleware checks those)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or header(scope, b"content-length") is not None:
            await self.app(scope, receive, send)
            return
        limit = settings.MAX_REQUEST_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json(
                    send,
                    413,
                    error_body(
                        status_code=413,
                        code="body_too_large",
                        message=f"Request body is over the limit of {limit} bytes.",
                    ),
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size == 0:
            replay: list[dict[str, Any]] = [
                {"type": "http.request", "body": b"", "more_body": False}
            ]
            await self.app(scope, _replaying(replay, receive), send)
            return
        headers = [
            (name, value) for name, value in scope["headers"] if name != b"transfer-encoding"
        ]
        headers.append((b"content-length", str(size).encode()))
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
        await self.app({**scope, "headers": headers}, _replaying(replay, receive), send)


def _replaying(messages: list[dict[str, Any]], receive: Any) -> Any:
    async def replay() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return await receive()  # after the body: the disconnect, when it comes

    return replay


def is_secure(scope: Scope) -> bool:
    """The request came over HTTPS, directly or (SECURE_PROXY_SSL_HEADER) through our proxy."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, expected = proxy_header
        meta_name = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = header(scope, meta_name)
        if value is not None:
            return value.split(",", 1)[0].strip() == expected
    return False


class SecureEdge:
    """For an ASGI app served without Django's middleware (`/v1`, see apps/proxy/asgi.py): what
    SecurityMiddleware, XFrameOptionsMiddleware and SecurityHeadersMiddleware do for the rest
    of the site. With SECURE_SSL_REDIRECT (production) a plain-HTTP request is redirected to
    HTTPS before anything reads it; every answer carries nosniff, X-Frame-Options DENY,
    Referrer-Policy, Cross-Origin-Opener-Policy, Permissions-Policy, a CSP (Swagger UI's under
    `docs_prefix`), and over HTTPS, HSTS. Headers the app set itself are kept."""

    def __init__(self, app: Any, docs_prefix: str = "") -> None:
        self.app = app
        self.docs_prefix = docs_prefix

    def _headers(self, scope: Scope, secure: bool) -> list[tuple[bytes, bytes]]:
        docs = bool(self.docs_prefix) and scope.get("path", "").startswith(self.docs_prefix)
        headers = {
            b"x-content-type-options": "nosniff",
            b"x-frame-options": "DENY",
            b"referrer-policy": settings.SECURE_REFERRER_POLICY or "same-origin",
            b"cross-origin-opener-policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
            or "same-origin",
            b"permissions-policy": PERMISSIONS_POLICY,
            b"content-security-policy": DOCS_CSP if docs else STRICT_CSP,
        }
        if secure and settings.SECURE_HSTS_SECONDS:
            hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                hsts += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                hsts += "; preload"
            headers[b"strict-transport-security"] = hsts
        return [(name, value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = is_secure(scope)
        if settings.SECURE_SSL_REDIRECT and not secure:
            await self._redirect(scope, send)
            return
        extra = self._headers(scope, secure)

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", ()),
                        *((name, value) for name, value in extra if name not in present),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_secured)

    async def _redirect(self, scope: Scope, send: Any) -> None:
        host = settings.SECURE_SSL_HOST or header(scope, b"host") or "localhost"
        target = f"https://{host}{scope.get('root_path', '')}{scope['path']}"
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        await send(
            {
                "type": "http.response.start",
                "status": 301,
                "headers": [(b"location", target.encode()), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
