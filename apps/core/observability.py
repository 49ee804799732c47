"""Per-request observability: the request id (apps/core/request_context.py), request metrics by
resolved route pattern (never the raw path: `/api/v1/pods/<uuid:pk>/`, not one series per pod),
and one access-log line per request when LOG_ACCESS is on.

`RequestContextMiddleware` is the first site middleware; `/v1` bypasses the site middleware
(apps/proxy/asgi.py), so `RequestContextASGI` gives its requests an id and an arrival time at
the ASGI level instead (the proxy's own metrics: apps/core/metrics.observe_proxy)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core import metrics, request_context

access_logger = logging.getLogger("gco.access")
UNMATCHED = "<unmatched>"
# A client may send any method name: others are counted as one, so no client can mint series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return "/" + (match.route or match.view_name or UNMATCHED)


class RequestContextMiddleware:
    """First in MIDDLEWARE: everything after it (rate limits, views) runs under the request's
    id, and its timing covers the whole chain."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_context.accept(request.headers.get(request_context.HEADER))
        token = request_context.bind(rid)
        request.request_id = rid  # type: ignore[attr-defined]  # for django.request's lines
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            route = route_of(request)
            metrics.observe_http(
                method=request.method if request.method in METHODS else "OTHER",
                route=route,
                status=response.status_code,
                seconds=seconds,
            )
            response.headers.setdefault(request_context.HEADER, rid)
            if settings.LOG_ACCESS:
                access_logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "route": route,
                        "status": response.status_code,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            return response
        finally:
            request_context.unbind(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        metrics.HTTP_EXCEPTIONS.labels(route_of(request), type(exception).__name__).inc()


class RequestContextASGI:
    """For `/v1/…` only: bind the request id and the arrival time, and answer with the id in
    `X-Request-ID`. Other paths pass through untouched (the middleware above does their part)."""

    def __init__(self, app: Any, prefix: str = "/v1/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        metrics.request_arrived.set(time.perf_counter())
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == request_context.ASGI_HEADER:
                incoming = value.decode("latin-1")
                break
        rid = request_context.accept(incoming)
        request_context.bind(rid)  # this task's context only: nothing to reset
        header = (request_context.ASGI_HEADER, rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
