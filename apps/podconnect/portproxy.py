"""The HTTP port proxy: `/pods/{id}/ports/{port}/…` reaches port `port` of a running pod,
WebSocket upgrades included (a Jupyter kernel's socket works through it).

Served at the ASGI level, in front of Django (config/asgi.py), like `/v1`: a download or a
notebook's socket lasts minutes, so it must not hold one of the bounded request slots nor a
thread of the sync middleware. Bodies stream both ways chunk by chunk, never buffered
(apps/podconnect/upstream.py). None of the site's own security headers is added to proxied
responses (no frame DENY, no CSP): the proxied app owns its headers. Hop-by-hop headers are
dropped both ways, and the site's own cookies (session, CSRF) never reach the pod
(apps/podconnect/proxy_headers.py).

Two spellings:
- `/pods/{id}/ports/{port}/rest` — the app sees `/rest` (and `X-Forwarded-Prefix`); for apps
  with relative links (`python -m http.server`, most dashboards).
- `/pods/{id}/ports-absolute/{port}/rest` — the app sees the whole path; for apps told their
  base URL (`jupyter lab --ServerApp.base_url=/pods/{id}/ports-absolute/8888/`).

Access rules: apps/podconnect/access.py."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from apps.podconnect import access, proxy_headers, upstream
from apps.podconnect.access import Denied, PodPorts

logger = logging.getLogger(__name__)

PATH = re.compile(
    r"^/pods/(?P<pod>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"/(?P<kind>ports|ports-absolute)/(?P<port>[0-9]{1,5})(?P<rest>/.*)?$"
)


class PortProxy:
    """The ASGI app behind `/pods/{id}/ports/{port}/…` (HTTP and WebSocket)."""

    def __init__(self) -> None:
        # One connection pool per event loop (streams belong to the loop that opened them).
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, upstream.Pool]
        self._pools = weakref.WeakKeyDictionary()

    def pool(self) -> upstream.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = upstream.Pool()
        return pool

    async def __call__(
        self, scope: dict[str, Any], receive: Any, send: Any, match: re.Match[str]
    ) -> None:
        pod_id = uuid.UUID(match["pod"])
        port = int(match["port"])
        query, query_token = proxy_headers.query_without_token(scope.get("query_string", b""))
        answer = await self.authorize(scope, pod_id, query_token)
        if isinstance(answer, Denied):
            await self.deny(scope, send, answer)
            return
        target = answer.target(port) if 1 <= port <= 65535 else Denied(404, "No such port.")
        if isinstance(target, Denied):
            await self.deny(scope, send, target)
            return
        if match["rest"] is None and scope["type"] == "http":
            # `/ports/8888` → `/ports/8888/`, so that the app's relative links resolve.
            await self.redirect(scope, send, query)
            return
        prefix = f"/pods/{match['pod']}/{match['kind']}/{port}"
        path = scope["path"] if match["kind"] == "ports-absolute" else (match["rest"] or "/")
        raw_path = scope.get("raw_path")
        if raw_path and match["kind"] == "ports":
            path = raw_path[len(prefix) :].decode("latin-1") or "/"
        elif raw_path:
            path = raw_path.decode("latin-1")
        target_path = f"{path}?{query.decode('latin-1')}" if query else path
        if scope["type"] == "http":
            await self.http(scope, receive, send, target, target_path, prefix)
        else:
            if answer.by_session and not self.same_site(scope):
                await self.deny(scope, send, Denied(403, "Cross-site WebSocket refused."))
                return
            await self.websocket(scope, receive, send, target, target_path, prefix)

    # --- access ---

    async def authorize(
        self, scope: dict[str, Any], pod_id: uuid.UUID, query_token: str
    ) -> PodPorts | Denied:
        token = proxy_headers.header_value(scope, access.TOKEN_HEADER) or query_token
        if token:
            digest = access.token_digest(token)
            answer = access.cached("t", digest, pod_id)
            if answer is None:
                answer = await database_sync_to_async(access.by_token)(digest, pod_id)
                access.remember("t", digest, pod_id, answer)
            return answer
        session_key = proxy_headers.session_key(scope)
        if not session_key:
            return access.NO_CREDENTIAL
        answer = access.cached("s", session_key, pod_id)
        if answer is None:
            answer = await database_sync_to_async(access.by_session)(session_key, pod_id)
            access.remember("s", session_key, pod_id, answer)
        return answer

    @staticmethod
    def same_site(scope: dict[str, Any]) -> bool:
        """A browser socket authorised by the session cookie must come from our own pages."""
        origin = proxy_headers.header_value(scope, b"origin")
        if not origin:
            return True
        host = origin.split("://", 1)[-1]
        domain, _port = split_domain_port(host)
        return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)

    async def deny(self, scope: dict[str, Any], send: Any, denied: Denied) -> None:
        body = json.dumps({"error": {"status": denied.status, "message": denied.message}})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if denied.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="pod-ports"'))
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})
                return
            start, body_type = "websocket.http.response.start", "websocket.http.response.body"
        else:
            start, body_type = "http.response.start", "http.response.body"
        await send({"type": start, "status": denied.status, "headers": headers})
        await send({"type": body_type, "body": body.encode()})

    async def redirect(self, scope: dict[str, Any], send: Any, query: bytes) -> None:
        location = scope["path"] + "/" + (f"?{query.decode('latin-1')}" if query else "")
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    # --- HTTP ---

    def forwarded(self, scope: dict[str, Any], prefix: str) -> list[tuple[bytes, bytes]]:
        client = scope.get("client") or ("", 0)
        host = proxy_headers.header_value(scope, b"host")
        extra = [
            (b"x-forwarded-for", str(client[0]).encode()),
            (
                b"x-forwarded-proto",
                b"https" if scope.get("scheme") in ("https", "wss") else b"http",
            ),
            (b"x-forwarded-prefix", prefix.encode()),
        ]
        if host:
            extra.append((b"x-forwarded-host", host.encode("latin-1")))
        return extra

    def request_headers(self, scope: dict[str, Any], prefix: str) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        for name, value in proxy_headers.end_to_end(list(scope.get("headers", ()))):
            if name in (access.TOKEN_HEADER, b"x-forwarded-for", b"x-forwarded-proto"):
                continue
            if name in (b"x-forwarded-host", b"x-forwarded-prefix"):
                continue
            if name == b"cookie":
                kept = proxy_headers.without_site_cookies(value)
                if kept is None:
                    continue
                value = kept
            headers.append((name, value))
        return headers + self.forwarded(scope, prefix)

    async def http(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        target: tuple[str, int],
        path: str,
        prefix: str,
    ) -> None:
        headers = [(n, v) for n, v in self.request_headers(scope, prefix) if n != b"expect"]
        length_header = next((v for n, v in headers if n == b"content-length"), None)
        chunked_in = any(n == b"transfer-encoding" for n, _ in scope.get("headers", ()))
        try:
            body_length = int(length_header) if length_header is not None else None
        except ValueError:
            await self.deny(scope, send, Denied(400, "Content-Length is not a number."))
            return
        has_body = bool(body_length) or chunked_in
        if not has_body:
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            body_length = None
        body_done = asyncio.Event()
        client_gone = False

        async def request_body() -> AsyncIterator[bytes]:
            nonlocal client_gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    # Gone mid-upload: end the exchange (the app would wait for the rest).
                    client_gone = True
                    body_done.set()
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body"):
                    break
            body_done.set()

        if not has_body:
            body_done.set()
        host, port = target

        async def relay() -> None:
            try:
                response = await upstream.send(
                    self.pool(),
                    host=host,
                    port=port,
                    method=scope["method"],
                    target=path,
                    headers=headers,
                    body=request_body() if has_body else None,
                    body_length=body_length,
                    connect_timeout=settings.POD_PORT_PROXY_CONNECT_TIMEOUT_S,
                    read_timeout=settings.POD_PORT_PROXY_READ_TIMEOUT_S,
                )
            except upstream.UpstreamTimeoutError:
                await self.deny(scope, send, Denied(504, f"Port {port} of the pod timed out."))
                return
            except upstream.UpstreamError as exc:
                logger.info("port proxy: %s:%s: %s", host, port, exc)
                await self.deny(
                    scope, send, Denied(502, f"Port {port} of the pod does not answer.")
                )
                return
            body = response.body
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": proxy_headers.end_to_end(response.headers),
                    }
                )
                # As the bytes arrive: nothing is gathered into bigger pieces.
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await body.aclose()  # type: ignore[attr-defined]

        async def listen() -> None:
            # Once the request body is in, the next message can only be a disconnect.
            await body_done.wait()
            while not client_gone:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        worker = asyncio.create_task(relay())
        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait((worker, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, listener):
                if not task.done():
                    task.cancel()
            for task in (worker, listener):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except (upstream.UpstreamError, OSError) as exc:
                    # The pod's app broke off mid-response: the client sees the body cut
                    # short, as it would talking to the app directly.
                    logger.info("port proxy: upstream %s:%s broke off: %s", host, port, exc)

    # --- WebSocket ---

    async def websocket(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        target: tuple[str, int],
        path: str,
        prefix: str,
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        headers = [
            (n.decode("latin-1"), v.decode("latin-1"))
            for n, v in self.request_headers(scope, prefix)
            if n not in proxy_headers.WS_OWN
        ]
        origin = proxy_headers.header_value(scope, b"origin")
        host, port = target
        try:
            peer = await ws_connect(
                f"ws://{host}:{port}{path}",
                additional_headers=headers,
                origin=Origin(origin) if origin else None,
                subprotocols=[Subprotocol(p) for p in scope.get("subprotocols") or []] or None,
                compression=None,
                max_size=None,
                open_timeout=settings.POD_PORT_PROXY_CONNECT_TIMEOUT_S,
                ping_interval=None,
                user_agent_header=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            await self.deny(scope, send, Denied(status, f"Port {port} refused the WebSocket."))
            return
        except (OSError, InvalidHandshake, TimeoutError):
            await self.deny(scope, send, Denied(502, f"Port {port} of the pod does not answer."))
            return
        await send({"type": "websocket.accept", "subprotocol": peer.subprotocol})
        to_pod = asyncio.create_task(self._browser_to_pod(receive, peer))
        to_browser = asyncio.create_task(self._pod_to_browser(peer, send))
        try:
            await asyncio.wait((to_pod, to_browser), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_pod, to_browser):
                if not task.done():
                    task.cancel()
            await asyncio.gather(to_pod, to_browser, return_exceptions=True)
            await peer.close()

    @staticmethod
    async def _browser_to_pod(receive: Any, peer: ClientConnection) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await peer.close(code=message.get("code") or 1000)
                return
            if message.get("bytes") is not None:
                await peer.send(message["bytes"])
            elif message.get("text") is not None:
                await peer.send(message["text"])

    @staticmethod
    async def _pod_to_browser(peer: ClientConnection, send: Any) -> None:
        try:
            async for message in peer:
                if isinstance(message, bytes):
                    await send({"type": "websocket.send", "bytes": message})
                else:
                    await send({"type": "websocket.send", "text": message})
        except ConnectionClosed:
            pass
        await send({"type": "websocket.close", "code": peer.close_code or 1000})


class PortProxyRouter:
    """`/pods/{id}/ports/{port}/…` (HTTP and WebSocket) to the port proxy, the rest to `app`."""

    def __init__(self, app: Any, proxy: PortProxy | None = None) -> None:
        self.app = app
        self.proxy = proxy or PortProxy()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            match = PATH.match(scope["path"])
            if match is not None:
                await self.proxy(scope, receive, send, match)
                return
        await self.app(scope, receive, send)
