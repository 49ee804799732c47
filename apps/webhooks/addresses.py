"""Where a webhook may be sent. In production only to public internet addresses: a URL whose
host is, or resolves to, a loopback, private, link-local, reserved or multicast address is
refused (no reaching our own network through a user's webhook). WEBHOOK_ALLOW_PRIVATE_URLS
lifts that for local development and tests. Checked when an endpoint is registered and again
before every attempt (DNS can change in between)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrlError(ValueError):
    pass


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Raise UnsafeUrlError saying why `url` cannot receive webhooks."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrlError("The URL must start with https:// (or http://).")
    if parts.username or parts.password:
        raise UnsafeUrlError("The URL must not carry a user name or password.")
    host = parts.hostname
    if not host:
        raise UnsafeUrlError("The URL has no host.")
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise UnsafeUrlError(f"The host {host!r} does not resolve.") from exc
    for info in infos:
        address = str(info[4][0])
        if not _is_public(address):
            raise UnsafeUrlError(
                f"The host {host!r} is a private, loopback or reserved address ({address}); "
                "webhooks go to public addresses only."
            )
