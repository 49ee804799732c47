"""How `/v1` is served. The proxy's views are async and hold no database connection while they
wait on a model, so they skip what the rest of the site needs:

- `BoundedConcurrency` (config/asgi.py) caps in-flight requests per process to protect the
  database pool. A streamed completion lasts seconds to minutes: under that cap the 17th
  concurrent stream would wait for one of 16 to finish. `/v1` is routed around it.
- The site's middleware is sync on purpose (one thread hop per request; see
  SyncBoundaryMiddleware). Behind it, every async `/v1` view would run through
  `async_to_sync` in a worker thread. `ProxyASGIHandler` is Django's ASGI handler with no
  middleware: the views run on the event loop. What the middleware did for `/v1` is done here
  or in the views: body-size cap (below, before the body is read), security headers (views),
  rate limits per deployment (routing.Router.check_rate)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

PREFIX = "/v1/"
URLCONF = "apps.proxy.urls"


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
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
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

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )


def _too_large(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length > settings.PROXY_MAX_BODY_BYTES else None
    return None


class ProxyRouter:
    """`/v1/*` to the proxy handler, everything else to `site` (the bounded Django app)."""

    def __init__(self, site: Any, proxy: Any | None = None) -> None:
        self.site = site
        self.proxy = proxy or ProxyASGIHandler()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            length = _too_large(scope)
            if length is not None:
                await _refuse_large(send, length)
                return
            await self.proxy(scope, receive, send)
            return
        await self.site(scope, receive, send)


async def _refuse_large(send: Any, length: int) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"Request body is {length} bytes; the limit is "
                f"{settings.PROXY_MAX_BODY_BYTES} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "body_too_large",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
