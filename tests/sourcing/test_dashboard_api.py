"""/api/v1/dashboard/*: personas, filters, sorting, pagination, query counts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.nodes.models import Node
from apps.pods.models import Pod, UsageRecord
from apps.sourcing import offer_book, registry
from apps.sourcing.breaker import BreakerState
from apps.sourcing.models import InstanceStatus, OfferBookEntry, ProvisionedInstance, UpstreamCharge

pytestmark = pytest.mark.django_db

PUBLIC = ["overview", "gpu-availability", "gpu-offers", "price-comparison"]
OPERATORS = ["provider-health", "cost-analytics"]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        email="ops@example.com", password="x-pass-1234", is_staff=True
    )


@pytest.fixture
def book(sourcing):
    offer_book.offer_book_refresh()
    return OfferBookEntry.objects.count()


@pytest.mark.parametrize("name", PUBLIC + OPERATORS)
def test_anonymous_is_refused(api_client, name):
    assert api_client.get(f"/api/v1/dashboard/{name}").status_code == 401


def test_users_see_the_market_operators_see_the_money(api_client, user, staff, book):
    api_client.force_authenticate(user)
    for name in PUBLIC:
        assert api_client.get(f"/api/v1/dashboard/{name}").status_code == 200, name
    for name in OPERATORS:
        assert api_client.get(f"/api/v1/dashboard/{name}").status_code == 403, name
    offer = api_client.get("/api/v1/dashboard/gpu-offers").json()["results"][0]
    assert "upstream_price_per_gpu_hour" not in offer and "markup_percent" not in offer
    assert "instances" not in api_client.get("/api/v1/dashboard/overview").json()
    api_client.force_authenticate(staff)
    for name in PUBLIC + OPERATORS:
        assert api_client.get(f"/api/v1/dashboard/{name}").status_code == 200, name
    offer = api_client.get("/api/v1/dashboard/gpu-offers").json()["results"][0]
    assert offer["upstream_price_per_gpu_hour"] < offer["price_per_gpu_hour"]
    overview = api_client.get("/api/v1/dashboard/overview").json()
    assert overview["offers"] == book and overview["live_instances"] == 0


def test_gpu_offers_filter_sort_paginate(api_client, user, book, django_assert_max_num_queries):
    api_client.force_authenticate(user)
    with django_assert_max_num_queries(6):
        page = api_client.get("/api/v1/dashboard/gpu-offers", {"gpu_model": "RTX 4090", "limit": 2})
    body = page.json()
    assert body["count"] == OfferBookEntry.objects.filter(gpu_model="RTX 4090").count()
    assert body["count"] > 2 and len(body["results"]) == 2 and body["next"]
    prices = [o["price_per_gpu_hour"] for o in body["results"]]
    assert prices == sorted(prices) and {o["gpu_model"] for o in body["results"]} == {"RTX 4090"}
    desc = api_client.get(
        "/api/v1/dashboard/gpu-offers", {"sort": "-price", "provider": "vast_ai"}
    ).json()
    prices = [o["price_per_gpu_hour"] for o in desc["results"]]
    assert prices == sorted(prices, reverse=True) and {o["provider"] for o in desc["results"]} == {
        "vast_ai"
    }
    cap = api_client.get("/api/v1/dashboard/gpu-offers", {"max_price": 400_000}).json()
    assert all(o["price_per_gpu_hour"] <= 400_000 for o in cap["results"])
    big = api_client.get(
        "/api/v1/dashboard/gpu-offers", {"min_vram_gb": 80, "sort": "price_per_gb"}
    ).json()
    assert big["results"] and all(o["vram_gb"] >= 80 for o in big["results"])


def test_bad_filters_name_the_field(api_client, user):
    api_client.force_authenticate(user)
    answer = api_client.get("/api/v1/dashboard/gpu-offers", {"sort": "random", "gpu_count": "x"})
    assert answer.status_code == 400
    fields = answer.json()["error"]["fields"]
    assert "sort" in fields and "gpu_count" in fields


def test_price_comparison_and_availability(api_client, user, book):
    api_client.force_authenticate(user)
    rows = api_client.get("/api/v1/dashboard/price-comparison", {"gpu_model": "RTX 4090"}).json()[
        "results"
    ]
    assert len(rows) == 1 and {p["provider"] for p in rows[0]["providers"]} >= {"vast_ai", "runpod"}
    cheapest = min(p["min_price_per_gpu_hour"] for p in rows[0]["providers"])
    assert (
        next(p for p in rows[0]["providers"] if p["provider"] == rows[0]["cheapest_provider"])[
            "min_price_per_gpu_hour"
        ]
        == cheapest
    )
    availability = api_client.get("/api/v1/dashboard/gpu-availability").json()["results"]
    h100 = next(r for r in availability if r["gpu_model"] == "H100 SXM")
    assert h100["offers"] > 0 and h100["providers"]


def test_provider_health_shows_a_blocked_provider_and_the_reset(api_client, staff, sourcing):
    registry.breaker_for("vast_ai").block("CredentialsError: Invalid user key")
    api_client.force_authenticate(staff)
    rows = {
        r["provider"]: r
        for r in api_client.get("/api/v1/dashboard/provider-health").json()["results"]
    }
    assert (
        rows["vast_ai"]["state"] == BreakerState.BLOCKED
        and "Invalid user key" in rows["vast_ai"]["reason"]
    )
    assert rows["runpod"]["state"] == BreakerState.CLOSED
    reset = api_client.post("/api/v1/dashboard/provider-health/vast_ai/reset")
    assert reset.status_code == 200 and reset.json()["state"] == BreakerState.CLOSED
    assert api_client.post("/api/v1/dashboard/provider-health/nope/reset").status_code == 404


def test_cost_analytics_spend_revenue_margin(api_client, staff, user):
    node = Node.objects.create(hostname="rented", token_digest="d" * 64, token_prefix="nt_x")
    pod = Pod.objects.create(
        owner=user, name="p", image="i", gpu_model="H100 SXM", gpu_count=1, node=node
    )
    instance = ProvisionedInstance.objects.create(
        label="gco-a",
        provider="runpod",
        provider_instance_id="abc",
        gpu_model="H100 SXM",
        status=InstanceStatus.ACTIVE,
        node=node,
        pod=pod,
        upstream_price_per_hour=2_000_000,
    )
    now = timezone.now()
    UpstreamCharge.objects.create(
        instance=instance,
        pod=pod,
        provider="runpod",
        gpu_model="H100 SXM",
        period_start=now - timedelta(hours=1),
        period_end=now,
        seconds=3600,
        price_per_hour=2_000_000,
        amount=2_000_000,
    )
    UsageRecord.objects.create(
        pod=pod,
        owner=user,
        node=node,
        period_start=now - timedelta(hours=1),
        period_end=now,
        seconds=3600,
        gpu_count=1,
        price_per_gpu_hour=2_500_000,
        amount=2_500_000,
    )
    api_client.force_authenticate(staff)
    body = api_client.get("/api/v1/dashboard/cost-analytics", {"days": 7}).json()
    assert body["totals"] == {"spend": 2_000_000, "revenue": 2_500_000, "margin": 500_000}
    assert body["by_provider"]["runpod"]["margin"] == 500_000
    assert api_client.get("/api/v1/dashboard/cost-analytics", {"days": 0}).status_code == 400
