"""The hot `/v1` endpoints as a raw ASGI app: `POST /v1/chat/completions`, `/v1/completions`
and `/v1/embeddings`, served without Django's request and response objects, URL resolver or
django-ninja (measured: most of what a proxied request cost besides the upstream client;
bench/proxy.py --profile). Every other `/v1` request goes on to the Django handler
(apps/proxy/asgi.py), and both go through the same steps, in the same order, with the same
answers:

a declared Content-Length over PROXY_MAX_BODY_BYTES is a 413 at once; then the deployment key
(401 without reading a byte of the body); then the body, read as it streams and refused with a
413 as soon as it passes the cap; then the body checked against the endpoint's schema (400
naming the field); then the key's limits, the route (held while no replica is READY) and the
deployment's rate (`admission.admit`); then `forward`. A client that disconnects cancels the
request, and so the upstream call or stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted

from apps.core.asgi import header, send_json
from apps.proxy import schemas
from apps.proxy.admission import admit
from apps.proxy.forward import Proxied, forward
from apps.proxy.routing import InvalidRequestError, ProxyError, router
from apps.proxy.schemas import parse_json

logger = logging.getLogger(__name__)

# path → (body schema, capability, endpoint, stream: None = as the body's `stream` asks)
FAST_ENDPOINTS: dict[str, tuple[Any, str, str, bool | None]] = {
    "/v1/chat/completions": (schemas.ChatCompletionIn, "chat", "chat/completions", None),
    "/v1/completions": (schemas.CompletionIn, "completions", "completions", None),
    "/v1/embeddings": (schemas.EmbeddingsIn, "embeddings", "embeddings", False),
}


class BodyTooLargeError(InvalidRequestError):
    status = 413
    code = "body_too_large"


def too_large(what: str) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"{what}; the limit is {settings.PROXY_MAX_BODY_BYTES} bytes.", param=None
    )


def scope_credential(scope: dict[str, Any]) -> str | None:
    """The deployment key in `Authorization: Bearer` or `X-API-Key` (api.credential's rule)."""
    auth = header(scope, b"authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return header(scope, b"x-api-key") or None


def declared_too_large(scope: dict[str, Any]) -> int | None:
    """The declared Content-Length when it is over the cap."""
    value = header(scope, b"content-length")
    if value is None or not value.strip().isdigit():
        return None
    length = int(value)
    return length if length > settings.PROXY_MAX_BODY_BYTES else None


async def send_proxy_error(send: Any, exc: ProxyError) -> None:
    headers = [(b"cache-control", b"no-store")]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    await send_json(send, exc.status, exc.body(), headers)


async def read_body(receive: Any) -> bytes:
    """The whole body, counted as it streams: BodyTooLargeError as soon as it passes
    PROXY_MAX_BODY_BYTES, whatever the transfer encoding; RequestAborted if the client
    leaves."""
    limit = settings.PROXY_MAX_BODY_BYTES
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large("Request body is over that")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def until_disconnect(receive: Any, work: Awaitable[None]) -> None:
    """Run `work` (which sends the response); cancel it if the client disconnects first."""
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - always run inside a task
    state = {"done": False, "gone": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state["done"]:
            state["gone"] = True
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        task.uncancel()  # the client left: nothing more to do
    finally:
        state["done"] = True
        watcher.cancel()


async def send_proxied(send: Any, proxied: Proxied) -> None:
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in proxied.headers.items()
    ]
    if "content-type" not in proxied.headers:
        headers.append((b"content-type", b"text/html; charset=utf-8"))  # as Django would
    if proxied.chunks is None:
        headers.append((b"content-length", str(len(proxied.body)).encode()))
        await send({"type": "http.response.start", "status": proxied.status, "headers": headers})
        await send({"type": "http.response.body", "body": proxied.body})
        return
    async with contextlib.aclosing(proxied.chunks) as chunks:
        await send({"type": "http.response.start", "status": proxied.status, "headers": headers})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class FastPath:
    """`FAST_ENDPOINTS` served here; anything else to `fallback` (the Django handler)."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        spec = FAST_ENDPOINTS.get(scope["path"]) if scope["method"] == "POST" else None
        if spec is None:
            await self.fallback(scope, receive, send)
            return
        length = declared_too_large(scope)
        if length is not None:
            await send_proxy_error(send, too_large(f"Request body is {length} bytes"))
            return
        try:
            identity = await router.authenticate(scope_credential(scope))
            raw = await read_body(receive)
        except RequestAborted:
            return
        except ProxyError as exc:
            await send_proxy_error(send, exc)
            return
        await until_disconnect(receive, self._serve(scope, send, spec, identity, raw))

    async def _serve(
        self,
        scope: dict[str, Any],
        send: Any,
        spec: tuple[Any, str, str, bool | None],
        identity: Any,
        raw: bytes,
    ) -> None:
        schema, capability, endpoint, stream = spec
        try:
            body: Any = parse_json(raw, schema)
            route, admission = await admit(identity, capability=capability, model=body.model)
            proxied = await forward(
                admission,
                route,
                endpoint=endpoint,
                raw=raw,
                content_type="application/json",
                accept=header(scope, b"accept") or "*/*",
                stream=bool(body.stream) if stream is None else stream,
            )
        except ProxyError as exc:
            await send_proxy_error(send, exc)
            return
        except Exception:
            logger.exception("proxy: unexpected error on %s", scope["path"])
            await send_proxy_error(send, ProxyError("Internal error; it has been logged."))
            return
        await send_proxied(send, proxied)
