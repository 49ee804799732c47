"""What crosses the port proxy (apps.podconnect.portproxy) besides the body: hop-by-hop headers
dropped both ways (RFC 9110 §7.6.1), the site's own cookies kept from the pod, the access token
taken out of the query string, the browser's session key read from its cookie."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.conf import settings

from apps.podconnect import access

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# What the WebSocket client library sets itself, or what describes the browser's hop only.
WS_OWN = frozenset(
    {
        b"host",
        b"origin",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"content-length",
    }
)


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named |= {t.strip().lower() for t in value.split(b",") if t.strip()}
    return named


def end_to_end(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = HOP_BY_HOP | connection_tokens(headers)
    return [(n, v) for n, v in headers if n.lower() not in drop]


def without_site_cookies(value: bytes) -> bytes | None:
    """The Cookie header minus our session and CSRF cookies (None when nothing is left)."""
    ours = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}
    kept = [
        part.strip()
        for part in value.decode("latin-1").split(";")
        if part.strip() and part.split("=", 1)[0].strip() not in ours
    ]
    return "; ".join(kept).encode("latin-1") if kept else None


def header_value(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def query_without_token(query: bytes) -> tuple[bytes, str]:
    """The query string without `gco_pod_token`, and the token ("" when absent)."""
    if access.TOKEN_QUERY.encode() not in query:
        return query, ""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    token = next((v for k, v in pairs if k == access.TOKEN_QUERY), "")
    kept = [(k, v) for k, v in pairs if k != access.TOKEN_QUERY]
    return urlencode(kept).encode("latin-1"), token


def session_key(scope: dict[str, Any]) -> str:
    raw = header_value(scope, b"cookie")
    if not raw:
        return ""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is just no session
        return ""
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None else ""
