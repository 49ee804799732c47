"""How `/v1` is served. The proxy's views are async and hold no database connection while they
wait on a model, so they skip what the rest of the site needs:

- `BoundedConcurrency` (config/asgi.py) caps in-flight requests per process to protect the
  database pool. A streamed completion lasts seconds to minutes: under that cap the 17th
  concurrent stream would wait for one of 16 to finish. `/v1` is routed around it.
- The site's middleware is sync on purpose (one thread hop per request; see
  SyncBoundaryMiddleware). Behind it, every async `/v1` view would run through
  `async_to_sync` in a worker thread. `ProxyASGIHandler` is Django's ASGI handler with no
  middleware: the views run on the event loop. What the middleware did for `/v1` is done here
  or in the views: the HTTPS redirect and security headers (`SecureEdge`), the body cap and
  the key check (below, before the body is read), rate limits per deployment
  (routing.Router.check_rate).

The hot endpoints (chat/completions, completions, embeddings) do not reach Django at all:
`FastPath` (apps/proxy/fastpath.py) serves them as a raw ASGI app, with the same steps below.

Order of a `/v1` request: a declared Content-Length over PROXY_MAX_BODY_BYTES is a 413 at once;
then the deployment key is checked (401 without reading a byte of the body, except for the
public docs and schema); then the body is read as it streams, whatever its transfer encoding,
counting bytes, and refused with a 413 as soon as it passes the cap (so at most the cap plus one
received chunk is ever held)."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import Resolver404, resolve, set_script_prefix

from apps.core.asgi import SecureEdge
from apps.proxy.fastpath import (
    BodyTooLargeError,
    FastPath,
    declared_too_large,
    scope_credential,
    send_proxy_error,
    too_large,
)
from apps.proxy.routing import InvalidRequestError, ProxyError, router

PREFIX = "/v1/"
URLCONF = "apps.proxy.urls"
# Served without a deployment key: the API's own documentation.
PUBLIC_PATHS = ("/v1/docs", "/v1/openapi.json")
DOCS_PREFIX = "/v1/docs"


class ProxyASGIHandler(ASGIHandler):
    """Django's ASGI handler without middleware and without per-request thread hops, for the
    async `/v1` views.

    Django's handler runs each request in a `ThreadSensitiveContext` and sends
    `request_started` / `request_finished` through `sync_to_async`: a new worker thread per
    request (measured: most of the proxy's own latency). Those signals exist to recycle the
    request thread's database connections; `/v1` views never use the database on the event
    loop (routing reads run in `routing._db`, which hands its connection back itself), so
    this handler skips them and serves the request on the loop alone."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        length = declared_too_large(scope)
        if length is not None:
            await send_proxy_error(send, too_large(f"Request body is {length} bytes"))
            return
        if not _is_endpoint(scope["path"]):
            # Unknown path: a 404 (api.not_found's answer) whatever it carries, body unread.
            error = InvalidRequestError(f"Unknown endpoint: {scope['method']} {scope['path']}.")
            error.status, error.code = 404, "unknown_url"
            await send_proxy_error(send, error)
            return
        if not scope["path"].startswith(PUBLIC_PATHS):
            try:
                # Cached per key (routing); the view's own check of the same key is a cache hit.
                await router.authenticate(scope_credential(scope))
            except ProxyError as exc:
                await send_proxy_error(send, exc)
                return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        except BodyTooLargeError as exc:
            await send_proxy_error(send, exc)
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is not None:
                request.urlconf = URLCONF
            if request is None:
                assert error_response is not None  # noqa: S101 - create_request's contract
                await self.send_response(error_response, send)
                return

            async def process() -> None:
                response = await self.run_get_response(request)
                try:
                    await self.send_response(response, send)  # streams: aclosing(relay)
                except asyncio.CancelledError:
                    pass  # the client went away mid-response

            # A client that disconnects cancels the response (and so the upstream stream).
            listener = asyncio.create_task(self.listen_for_disconnect(receive))
            worker = asyncio.create_task(process())
            await asyncio.wait((listener, worker), return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, worker):
                if task.done():
                    try:
                        task.result()
                    except RequestAborted:
                        pass
                else:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
        finally:
            body_file.close()

    async def read_body(self, receive: Any) -> Any:
        """The body, read as it streams and counted: BodyTooLargeError as soon as it passes
        PROXY_MAX_BODY_BYTES, whatever the transfer encoding (a chunked body declares no
        length). Spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE, like Django's."""
        limit = settings.PROXY_MAX_BODY_BYTES
        body_file = tempfile.SpooledTemporaryFile(  # closed by handle()
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestAborted()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large("Request body is over that")
                if chunk:
                    if getattr(body_file, "_rolled", False):
                        await sync_to_async(body_file.write, thread_sensitive=False)(chunk)
                    else:
                        body_file.write(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )


def _is_endpoint(path: str) -> bool:
    try:
        resolve(path, urlconf=URLCONF)
    except Resolver404:
        return False
    return True


class ProxyRouter:
    """`/v1/*` to the proxy (behind `SecureEdge`): its hot endpoints to the raw ASGI fast path,
    the rest to the Django handler; everything else to `site` (the bounded Django app)."""

    def __init__(self, site: Any, proxy: Any | None = None) -> None:
        self.site = site
        self.proxy = SecureEdge(proxy or FastPath(ProxyASGIHandler()), docs_prefix=DOCS_PREFIX)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.proxy(scope, receive, send)
            return
        await self.site(scope, receive, send)
