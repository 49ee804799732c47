"""`GET /metrics` in Prometheus' text format. Never public: without METRICS_TOKEN_SHA256 or
METRICS_ALLOWED_NETWORKS the endpoint does not exist (404); with either, a scrape that does not
satisfy every configured check gets a 403. The token is compared as its SHA-256 digest in
constant time, so only the digest is configured anywhere."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from apps.core.errors import json_error
from apps.core.middleware import client_ip
from apps.portal.metrics_collectors import StateCollector


@cache
def _state_collector() -> StateCollector:
    return StateCollector()


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_InProcess())
    registry.register(_state_collector())
    return registry


class _InProcess(Collector):
    """This process's own metrics (the default registry), without the state collector."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in spec)


def _token_ok(request: HttpRequest, expected_digest: str) -> bool:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() != "bearer " or not auth[7:].strip():
        return False
    digest = hashlib.sha256(auth[7:].strip().encode()).hexdigest()
    return hmac.compare_digest(digest, expected_digest.lower())


def _network_ok(request: HttpRequest, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in network for network in _networks(networks))


def metrics(request: HttpRequest) -> HttpResponse:
    token_digest = settings.METRICS_TOKEN_SHA256
    networks = tuple(settings.METRICS_ALLOWED_NETWORKS)
    if not token_digest and not networks:
        return json_error(status_code=404, code="not_found", message="Not found.")
    if (token_digest and not _token_ok(request, token_digest)) or (
        networks and not _network_ok(request, networks)
    ):
        return json_error(
            status_code=403,
            code="forbidden",
            message="Metrics need the scrape token (Authorization: Bearer …) "
            "or an address in METRICS_ALLOWED_NETWORKS.",
        )
    response = HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
