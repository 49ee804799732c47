"""One price list: own nodes and upstream offers together in GET /api/v1/nodes/available,
the pod form's offers and the public /gpus page, at our price (markup included), with the
provider's kind and reliability, and without the upstream's name when the operator hides it."""

import pytest

from apps.sourcing import offer_book
from apps.sourcing.models import OfferBookEntry
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def test_own_nodes_and_upstream_offers_in_one_list(sourcing, api_client, user, client):
    make_node("ours", gpus=2, price=690_000)
    offer_book.offer_book_refresh()
    api_client.force_authenticate(user)

    rows = api_client.get("/api/v1/nodes/available").json()

    own = [r for r in rows if r["source"] == "own"]
    upstream = [r for r in rows if r["source"] == "upstream"]
    assert [r["gpu_model"] for r in own] == ["RTX 4090"] and own[0]["reliability"] == 1.0
    assert {r["provider"] for r in upstream} == {"Vast.ai", "RunPod", "Lambda"}
    h100 = min(
        (r for r in upstream if r["gpu_model"] == "H100 SXM" and not r["spot"]),
        key=lambda r: r["price_per_gpu_hour"],
    )
    cheapest = (
        OfferBookEntry.objects.filter(gpu_model="H100 SXM", spot=False)
        .order_by("price_per_gpu_hour")
        .first()
    )
    assert h100["price_per_gpu_hour"] == cheapest.price_per_gpu_hour
    assert cheapest.price_per_gpu_hour == -(-cheapest.upstream_price_per_gpu_hour * 125 // 100)
    assert 0 < h100["reliability"] <= 1 and h100["provider_kind"].startswith("upstream")
    assert any(r["spot"] for r in upstream)  # spot rows of the clouds with a bid market

    page = client.get("/gpus")  # public
    assert page.status_code == 200 and b"H100 SXM" in page.content and b"RunPod" in page.content


def test_an_operator_can_hide_the_upstreams_names(sourcing, settings, api_client, user, client):
    settings.SOURCING_HIDE_PROVIDER_NAMES = True
    offer_book.offer_book_refresh()
    api_client.force_authenticate(user)
    rows = api_client.get("/api/v1/nodes/available").json()
    upstream = [r for r in rows if r["source"] == "upstream"]
    assert upstream and {r["provider"] for r in upstream} == {""}
    assert {r["provider_kind"] for r in upstream} == {
        "upstream container cloud",
        "upstream VM cloud",
    }
    page = client.get("/gpus").content.decode()
    for name in ("Vast", "RunPod", "Lambda", "vast_ai", "runpod", "lambda_labs"):
        assert name not in page
