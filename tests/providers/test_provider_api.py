"""The provider API: registration, keys (shown once, hashed, several, revocable), node
registration with a key, node list and pricing within the bands (new pods only), dashboard.
Authorisation: owner, other provider, user without a profile (403), anonymous (401)."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.secrets import secret_digest
from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.nodes.registration import registration_grant
from apps.pods.metering import meter_tick
from apps.pods.services import pod_create
from apps.providers.models import GpuPriceBand, ProviderKey
from apps.providers.services import payout_request, provider_key_create
from tests.factories import CRYPTO, POD, earn, fund, make_node, report_container

pytestmark = pytest.mark.django_db


def as_user(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def test_register_gives_a_basic_provider_and_a_key_shown_once(api_client, user):
    client = as_user(api_client, user)

    response = client.post(
        "/api/v1/providers/register", {"display_name": "Rig farm"}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["provider"]["tier"], body["provider"]["fee_percent"]) == ("BASIC", 20)
    raw = body["key"]["key"]
    assert raw.startswith("pk_")
    stored = ProviderKey.objects.get()
    assert stored.digest == secret_digest(raw) and raw not in (stored.prefix, stored.digest)
    assert "key" not in client.get("/api/v1/providers/keys").json()[0]
    again = client.post("/api/v1/providers/register", {"display_name": "x"}, format="json")
    assert again.status_code == 409


def test_register_validates_payout_details(api_client, user):
    response = as_user(api_client, user).post(
        "/api/v1/providers/register",
        {
            "display_name": "Rig farm",
            "payout_method": "CRYPTO",
            "payout_details": {**CRYPTO, "chain": "bitcoin"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert "payout_details.chain" in response.json()["error"]["fields"]


def test_keys_register_nodes_until_revoked(api_client, provider):
    client = as_user(api_client, provider.owner)
    second = client.post("/api/v1/providers/keys", {"name": "rack 2"}, format="json").json()
    assert len(client.get("/api/v1/providers/keys").json()) == 2

    grant = registration_grant(second["key"])
    assert grant is not None and grant.provider_id == provider.pk
    node = node_services.node_register(grant=grant, data={"hostname": "rig-1", "gpus": []}).node
    assert node.provider_id == provider.pk
    assert ProviderKey.objects.get(pk=second["id"]).last_used_at is not None

    revoked = client.delete(f"/api/v1/providers/keys/{second['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert registration_grant(second["key"]) is None
    assert registration_grant("pk_" + "x" * 43) is None


def test_nodes_list_only_the_providers_own(api_client, provider, make_provider):
    other = make_provider("other-farm@example.com")
    mine = make_node("mine", provider_id=provider.pk)
    make_node("theirs", provider_id=other.pk)
    make_node("platform")

    client = as_user(api_client, provider.owner)
    with CaptureQueriesContext(connection) as queries:
        listed = client.get("/api/v1/providers/nodes").json()
    assert [n["id"] for n in listed] == [str(mine.pk)]
    assert listed[0]["gpus"][0]["model"] == "RTX 4090"
    for _ in range(3):
        make_node(f"more-{uuid.uuid4().hex[:4]}", provider_id=provider.pk)
    with CaptureQueriesContext(connection) as more:
        assert len(client.get("/api/v1/providers/nodes").json()) == 4
    assert len(more) == len(queries)  # no query per node


def test_pricing_within_band_applies_to_pods_placed_after(api_client, provider, user):
    GpuPriceBand.objects.create(gpu_model="RTX 4090", floor=300_000, ceiling=900_000)
    node = make_node("rig", gpus=2, price=500_000, provider_id=provider.pk)
    fund(user, 100_000_000)
    before = pod_create(owner=user, spec=POD).pod
    assert before.price_per_gpu_hour == 500_000
    client = as_user(api_client, provider.owner)
    url = f"/api/v1/providers/nodes/{node.pk}/pricing"

    too_low = client.patch(url, {"price_per_gpu_hour": 299_999}, format="json")
    too_high = client.patch(url, {"price_per_gpu_hour": 900_001}, format="json")
    ok = client.patch(url, {"price_per_gpu_hour": 700_000}, format="json")

    assert too_low.status_code == too_high.status_code == 400
    assert "price_per_gpu_hour" in too_low.json()["error"]["fields"]
    assert ok.status_code == 200 and ok.json()["price_per_gpu_hour"] == 700_000
    after = pod_create(owner=user, spec=POD).pod
    assert after.price_per_gpu_hour == 700_000
    before.refresh_from_db()
    assert before.price_per_gpu_hour == 500_000  # running pods keep their price


def test_dashboard_shows_earnings_balances_and_nodes(api_client, provider, user):
    node = make_node("rig", gpus=1, price=360_000, provider_id=provider.pk)
    fund(user, 100_000_000)
    pod = pod_create(owner=user, spec=POD).pod
    report_container(node, pod.pk, "running", started_at=timezone.now() - timedelta(seconds=100))
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())
    meter_tick(now=timezone.now())
    earn(provider, 30_000_000)
    payout_request(provider=provider, amount=10_000_000, method="CRYPTO", details=CRYPTO)

    body = as_user(api_client, provider.owner).get("/api/v1/providers/dashboard").json()

    node_row = body["nodes"][0]
    shares = node_row["earned_30d"]
    assert shares > 0 and shares == body["earnings"]["all_time"] - 30_000_000
    assert body["earnings"]["today"] == body["earnings"]["last_30_days"] == shares + 30_000_000
    assert body["balances"]["pending"] == 10_000_000
    assert body["balances"]["available"] == shares + 20_000_000
    assert (node_row["gpus"], node_row["gpus_rented"], node_row["status"]) == (1, 1, "ONLINE")
    assert node_row["uptime_30d_pct"] is not None


PROVIDER_GETS = [
    "/api/v1/providers/me",
    "/api/v1/providers/keys",
    "/api/v1/providers/nodes",
    "/api/v1/providers/dashboard",
    "/api/v1/providers/payouts",
]


@pytest.mark.parametrize("url", PROVIDER_GETS)
def test_users_without_a_provider_profile_get_403(api_client, user, url):
    response = as_user(api_client, user).get(url)
    assert response.status_code == 403
    assert "provider profile" in response.json()["error"]["message"]


def test_users_without_a_profile_cannot_request_payouts_or_price(api_client, user):
    client = as_user(api_client, user)
    assert (
        client.post(
            "/api/v1/providers/payouts/request", {"amount_usd": "20.00"}, format="json"
        ).status_code
        == 403
    )
    url = f"/api/v1/providers/nodes/{uuid.uuid4()}/pricing"
    assert client.patch(url, {"price_per_gpu_hour": 1}, format="json").status_code == 403


@pytest.mark.parametrize("url", [*PROVIDER_GETS, "/api/v1/providers/register"])
def test_anonymous_gets_401(api_client, url):
    assert api_client.get(url).status_code == 401


def test_another_providers_objects_are_404(api_client, provider, make_provider):
    other = make_provider("other-farm@example.com")
    their_node = make_node("theirs", provider_id=other.pk)
    earn(other, 30_000_000)
    their_payout = payout_request(
        provider=other, amount=10_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    their_key = provider_key_create(provider=other, name="k").key
    client = as_user(api_client, provider.owner)

    pricing = client.patch(
        f"/api/v1/providers/nodes/{their_node.pk}/pricing",
        {"price_per_gpu_hour": 500_000},
        format="json",
    )
    assert pricing.status_code == 404
    assert client.get(f"/api/v1/providers/payouts/{their_payout.pk}").status_code == 404
    assert client.delete(f"/api/v1/providers/keys/{their_key.pk}").status_code == 404
    assert client.get("/api/v1/providers/payouts").json() == []
    dashboard = client.get("/api/v1/providers/dashboard").json()
    assert dashboard["nodes"] == [] and dashboard["earnings"]["all_time"] == 0
    assert Node.objects.get(pk=their_node.pk).price_per_gpu_hour is None
    ProviderKey.objects.get(pk=their_key.pk, revoked_at__isnull=True)
