"""Upstream calls by provider, operation and outcome, and each provider's breaker state, as
`/metrics` shows them: real adapters against the simulators over HTTP."""

import asyncio
import hashlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.sourcing import registry
from apps.sourcing.adapters.base import CredentialsError, OfferFilters
from tests.sourcing.conftest import make_adapter

pytestmark = pytest.mark.django_db
TOKEN = "upstream-metrics-token"


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def calls(samples: dict, provider: str, outcome: str) -> float:
    """Over every operation (one offer search may be more than one call)."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "gco_upstream_calls_total"
        and {("provider", provider), ("outcome", outcome)} <= labels
    )


def test_calls_and_breaker_states(client, settings, sourcing):
    settings.METRICS_TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()
    before = scrape(client)

    # Given one good call to vast and one with a refused key to runpod
    async def call() -> None:
        await make_adapter(sourcing["vast_ai"], "vast_ai").list_offers(OfferFilters())
        with pytest.raises(CredentialsError):
            await make_adapter(sourcing["runpod"], "runpod", api_key="wrong").list_offers(
                OfferFilters()
            )

    asyncio.run(call())
    # and lambda's breaker opened by failures
    breaker = registry.breaker_for("lambda_labs")
    for _ in range(breaker.failure_threshold):
        breaker.record_failure("test")

    after = scrape(client)
    assert calls(after, "vast_ai", "ok") - calls(before, "vast_ai", "ok") >= 1
    refused = calls(after, "runpod", "CredentialsError") - calls(
        before, "runpod", "CredentialsError"
    )
    assert refused == 1

    def state(provider: str, name: str) -> float:
        labels = frozenset({"provider": provider, "state": name}.items())
        return after[("gco_upstream_breaker_state", labels)]

    assert state("lambda_labs", "OPEN") == 1 and state("lambda_labs", "CLOSED") == 0
    assert state("vast_ai", "CLOSED") == 1
