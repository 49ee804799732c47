"""Signatures of outgoing webhooks, Stripe's scheme with our header name:

    X-GCO-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

An endpoint's secret (`whsec_…`) is derived, not stored: HMAC-SHA256 of the endpoint's id and
its random `secret_salt` under WEBHOOK_SIGNING_KEY (default: SECRET_KEY). So the database holds
nothing that signs; rolling the salt (or the signing key) changes the secret."""

import base64
import hashlib
import hmac
import secrets
import time

from django.conf import settings

SECRET_PREFIX = "whsec_"  # noqa: S105 - a visible prefix, not a secret
SIGNATURE_HEADER = "X-GCO-Signature"
DEFAULT_TOLERANCE_S = 300


def new_salt() -> str:
    return secrets.token_hex(16)


def endpoint_secret(*, endpoint_id: object, salt: str) -> str:
    key = (settings.WEBHOOK_SIGNING_KEY or settings.SECRET_KEY).encode()
    mac = hmac.new(key, f"webhook:{endpoint_id}:{salt}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for `body` sent at `timestamp` (default now)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    *, secret: str, body: bytes, header: str, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """What a receiver does: the header's v1 matches the body, and t is recent."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = sign(secret=secret, body=body, timestamp=t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
