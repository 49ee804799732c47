"""GET /api/v1/users/me, /users/balance and /users/transactions: owner, other tenant, anonymous."""

import uuid

import pytest

from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_credit, wallet_for

pytestmark = pytest.mark.django_db

ROUTES = ("/api/v1/users/me", "/api/v1/users/balance", "/api/v1/users/transactions")


def top_up(user, micros):
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=f"test:{uuid.uuid4()}",
        memo="Top-up",
        lines=[
            (platform_account(AccountKind.STRIPE_CLEARING), -micros),
            (wallet_for(user), micros),
        ],
    )


def charge(user, micros):
    ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=f"test:{uuid.uuid4()}",
        memo="RTX 4090 × 1, 10 min",
        lines=[
            (wallet_for(user), -micros),
            (platform_account(AccountKind.PLATFORM_REVENUE), micros),
        ],
        floor=True,
    )


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_callers_get_401(api_client, route):
    response = api_client.get(route)
    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


def test_me_shows_the_user_and_their_balance(api_client, user):
    top_up(user, 12_345_678)
    api_client.force_authenticate(user)

    body = api_client.get("/api/v1/users/me").json()

    assert body == {
        "id": str(user.pk),
        "email": user.email,
        "name": user.name,
        "balance_micros": 12_345_678,
        "balance_usd": "12.35",
    }


def test_balance_is_zero_before_any_top_up_and_creates_no_wallet(api_client, user):
    api_client.force_authenticate(user)
    body = api_client.get("/api/v1/users/balance").json()
    assert body == {"balance_micros": 0, "balance_usd": "0.00", "currency": "USD"}
    assert not user.ledger_accounts.exists()


def test_another_tenant_sees_only_their_own_money(api_client, user, other_user):
    top_up(user, 50_000_000)
    charge(user, 1_000_000)
    api_client.force_authenticate(other_user)

    assert api_client.get("/api/v1/users/balance").json()["balance_micros"] == 0
    assert api_client.get("/api/v1/users/me").json()["email"] == other_user.email
    listing = api_client.get("/api/v1/users/transactions").json()
    assert listing["count"] == 0 and listing["results"] == []


def test_transactions_are_newest_first_with_their_effect_on_the_wallet(api_client, user, operator):
    top_up(user, 20_000_000)
    charge(user, 1_250_000)
    wallet_credit(
        user=user, amount=500_000, reason="outage", operator=operator, idempotency_key="c1"
    )
    api_client.force_authenticate(user)

    results = api_client.get("/api/v1/users/transactions").json()["results"]

    assert [(r["kind"], r["amount_micros"], r["amount_usd"], r["effect"]) for r in results] == [
        ("CREDIT", 500_000, "0.50", "credit"),
        ("USAGE", -1_250_000, "-1.25", "debit"),
        ("TOPUP", 20_000_000, "20.00", "credit"),
    ]
    assert results[1]["memo"] == "RTX 4090 × 1, 10 min"
    assert {"id", "created_at"} <= set(results[0])


def test_transactions_are_paginated_with_limit_and_offset(api_client, user):
    top_up(user, 100_000_000)
    for _ in range(6):
        charge(user, 1_000_000)
    api_client.force_authenticate(user)

    page = api_client.get("/api/v1/users/transactions?limit=3").json()
    rest = api_client.get("/api/v1/users/transactions?limit=3&offset=6").json()

    assert page["count"] == 7 and len(page["results"]) == 3
    assert "offset=3" in page["next"] and page["previous"] is None
    assert [r["kind"] for r in rest["results"]] == ["TOPUP"]
    assert rest["next"] is None


def test_transactions_filter_by_kind_and_refuse_an_unknown_kind(api_client, user):
    top_up(user, 10_000_000)
    charge(user, 1_000_000)
    api_client.force_authenticate(user)

    usage = api_client.get("/api/v1/users/transactions?kind=USAGE").json()
    bad = api_client.get("/api/v1/users/transactions?kind=BOGUS")

    assert [r["kind"] for r in usage["results"]] == ["USAGE"]
    assert bad.status_code == 400 and "kind" in bad.json()["error"]["fields"]
