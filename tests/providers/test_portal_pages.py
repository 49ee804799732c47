"""The provider portal's pages through Django's test client: register (key shown once with the
install one-liner), keys, nodes with the price form (the operator's band enforced, the error
shown), earnings chart periods, payouts (form errors per field, idempotent double submit)."""

import re
import uuid

import pytest
from django.test import Client

from apps.nodes.models import Node
from apps.providers.models import GpuPriceBand, Payout, PayoutStatus, Provider, ProviderKey
from tests.factories import EVM_ADDRESS, earn, make_node

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def provider_client(provider) -> Client:
    client = Client()
    client.force_login(provider.owner)
    return client


def test_without_a_profile_every_page_leads_to_register(browser):
    for path in ("/provider/", "/provider/nodes/", "/provider/payouts/", "/provider/keys/"):
        response = browser.get(path)
        assert response.status_code == 302 and response["Location"] == "/provider/register/"


def test_register_shows_the_key_once_with_the_installer(browser, user):
    response = browser.post(
        "/provider/register/",
        {"display_name": "Rigs", "method": "PAYPAL", "paypal_email": "rigs@example.com"},
    )
    assert response.status_code == 201
    html = response.content.decode()
    raw = re.search(r"(pk_[A-Za-z0-9_\-]+)", html).group(1)
    provider = Provider.objects.get(owner=user)
    assert provider.payout_details == {"email": "rigs@example.com"}
    assert "export GCO_PROVIDER_KEY &amp;&amp; curl -fsSL http" in html
    assert "/api/v1/nodes/install.sh | sudo -E bash" in html
    key = ProviderKey.objects.get(provider=provider)
    assert raw.startswith(key.prefix) and raw not in key.digest
    # Shown once: the keys page lists the prefix only.
    assert raw not in browser.get("/provider/keys/").content.decode()
    # Registered once: the register page now leads to the overview.
    assert browser.get("/provider/register/")["Location"] == "/provider/"


def test_register_names_the_bad_field_and_creates_nothing(browser, user):
    response = browser.post(
        "/provider/register/",
        {
            "display_name": "Rigs",
            "method": "CRYPTO",
            "currency": "USDC",
            "chain": "polygon",
            "address": EVM_ADDRESS.lower(),
        },
    )
    assert response.status_code == 400
    assert "checksummed" in response.content.decode()
    assert not Provider.objects.filter(owner=user).exists()


def test_keys_create_and_revoke(provider_client, provider):
    created = provider_client.post("/provider/keys/", {"name": "rack 2"})
    page = created.content.decode()
    assert created.status_code == 201 and "pk_" in page and "--provider-key" not in page
    key = ProviderKey.objects.get(provider=provider, name="rack 2")
    assert provider_client.post(f"/provider/keys/{key.pk}/revoke").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_another_providers_key_and_node_are_404(provider_client, make_provider):
    other = make_provider("other@example.com")
    key = ProviderKey.objects.get(provider=other)
    node = make_node("theirs", provider_id=other.pk)
    assert provider_client.post(f"/provider/keys/{key.pk}/revoke").status_code == 404
    response = provider_client.post(f"/provider/nodes/{node.pk}/price", {"price_usd": "1"})
    assert response.status_code == 404


def test_nodes_show_telemetry_and_price_within_the_band(provider_client, provider):
    node = make_node("rig-1", gpus=2, provider_id=provider.pk)
    GpuPriceBand.objects.create(gpu_model="RTX 4090", floor=300_000, ceiling=900_000)
    page = provider_client.get("/provider/nodes/").content.decode()
    assert "rig-1" in page and "RTX 4090" in page and "$0.3000 – $0.9000" in page
    assert "data-poll-url" not in page  # an ONLINE node: nothing to wait for

    too_high = provider_client.post(f"/provider/nodes/{node.pk}/price", {"price_usd": "1.50"})
    assert too_high.status_code == 400
    assert "between 300000 and 900000" in too_high.content.decode()
    not_a_price = provider_client.post(f"/provider/nodes/{node.pk}/price", {"price_usd": "abc"})
    assert not_a_price.status_code == 400
    node.refresh_from_db()
    assert node.price_per_gpu_hour is None

    ok = provider_client.post(f"/provider/nodes/{node.pk}/price", {"price_usd": "0.69"})
    assert ok.status_code == 302
    assert Node.objects.get(pk=node.pk).price_per_gpu_hour == 690_000


def test_nodes_page_polls_until_the_first_node_arrives(provider_client, provider):
    page = provider_client.get("/provider/nodes/").content.decode()
    assert 'data-poll-url="/provider/nodes/"' in page and "Waiting for your first machine" in page
    make_node("rig-1", provider_id=provider.pk)
    fragment = provider_client.get("/provider/nodes/", headers={"X-Requested-With": "fetch"})
    html = fragment.content.decode()
    assert html.startswith('<div id="provider-nodes"') and "rig-1" in html
    assert "data-poll-url" not in html


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_overview_charts_earnings(provider_client, provider, period):
    earn(provider, 25_000_000)
    response = provider_client.get(f"/provider/?period={period}")
    assert response.status_code == 200
    points = response.context["earnings_points"]
    assert sum(float(p["value"]) for p in points) == 25.0
    assert 'data-testid="available">$25.00' in response.content.decode()


def test_payout_request_is_idempotent_and_errors_name_the_field(provider_client, provider):
    earn(provider, 30_000_000)
    form = provider_client.get("/provider/payouts/").context["form"]
    key = form.initial["idempotency_key"]
    assert form.initial["method"] == "CRYPTO" and form.initial["address"] == EVM_ADDRESS
    body = {
        "amount_usd": "20.00",
        "method": "PAYPAL",
        "paypal_email": "farm@example.com",
        "idempotency_key": key,
    }
    assert provider_client.post("/provider/payouts/", body).status_code == 302
    assert provider_client.post("/provider/payouts/", body).status_code == 302  # double submit
    payout = Payout.objects.get(provider=provider)
    assert (payout.amount, payout.status) == (20_000_000, PayoutStatus.REQUESTED)
    assert payout.details == {"email": "farm@example.com"}

    too_much = provider_client.post(
        "/provider/payouts/", {**body, "idempotency_key": str(uuid.uuid4())}
    )
    assert too_much.status_code == 400
    assert "$10.000000 is available" in too_much.content.decode()
    no_email = provider_client.post(
        "/provider/payouts/",
        {**body, "paypal_email": "", "amount_usd": "10", "idempotency_key": str(uuid.uuid4())},
    )
    assert no_email.status_code == 400
    assert no_email.context["form"].errors["paypal_email"]
    assert Payout.objects.filter(provider=provider).count() == 1
    history = provider_client.get("/provider/payouts/").content.decode()
    assert "REQUESTED" in history and "$20.00" in history
