"""The dashboard and the API-key pages: a key is shown once, works, and is revoked by its owner
only."""

import uuid
from decimal import Decimal

import pytest
from django.test import Client

from apps.accounts.models import ApiKey
from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_for

pytestmark = pytest.mark.django_db


ALL = ["read", "pods", "models", "billing"]


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


def test_key_is_shown_once_and_authenticates(owner, user):
    response = owner.post("/api-keys/", {"name": "laptop", "scopes": ALL})

    key = ApiKey.objects.get(user=user)
    raw = response.context["created"].raw_key
    assert raw.startswith("gco_") and raw.encode() in response.content
    assert raw.encode() not in owner.get("/api-keys/").content  # never again
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/users/balance").status_code == 200
    assert key.prefix.encode() in owner.get("/api-keys/").content


def test_revoke_by_owner_only(owner, user, other_user):
    raw = owner.post("/api-keys/", {"name": "ci", "scopes": ALL}).context["created"].raw_key
    key = ApiKey.objects.get(user=user)
    stranger = Client()
    stranger.force_login(other_user)

    assert stranger.post(f"/api-keys/{key.pk}/revoke").status_code == 404
    assert stranger.get("/api-keys/").content.count(key.prefix.encode()) == 0
    assert (
        Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/users/balance").status_code == 200
    )

    assert owner.post(f"/api-keys/{key.pk}/revoke").status_code == 302
    assert (
        Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/users/balance").status_code == 401
    )
    assert owner.get(f"/api-keys/{key.pk}/revoke").status_code == 405


def test_blank_key_name_is_400(owner):
    response = owner.post("/api-keys/", {"name": ""})
    assert response.status_code == 400 and "name" in response.context["form"].errors
    assert not ApiKey.objects.exists()


def test_dashboard_shows_balance_and_this_months_spend(owner, user):
    wallet = wallet_for(user)
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=f"t:{uuid.uuid4()}",
        memo="top-up",
        lines=[(platform_account(AccountKind.STRIPE_CLEARING), -10_000_000), (wallet, 10_000_000)],
    )
    ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=f"t:{uuid.uuid4()}",
        memo="usage",
        lines=[(wallet, -1_500_000), (platform_account(AccountKind.PLATFORM_REVENUE), 1_500_000)],
    )

    page = owner.get("/dashboard/")

    assert page.status_code == 200
    assert b"$8.50" in page.content and b"$1.50" in page.content
    days = page.context["spend_points"]
    assert sum(Decimal(d["value"]) for d in days) == Decimal("1.5")
    assert b'id="spend-data"' in page.content and b'data-chart="spend-data"' in page.content


def test_login_lands_on_the_dashboard(client, user):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    response = client.post("/accounts/login/", {"login": user.email, "password": "s3cret-pass-1"})
    assert response["Location"] == "/dashboard/"


def test_dashboard_says_how_long_the_balance_lasts_and_its_queries_do_not_grow(owner, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.pods.models import Pod, PodStatus
    from tests.factories import fund, make_node

    fund(user, 10_000_000)
    node = make_node(price=1_000_000)

    def running_pod(i):
        Pod.objects.create(
            owner=user,
            name=f"r{i}",
            image="x",
            gpu_model="RTX 4090",
            gpu_count=1,
            status=PodStatus.RUNNING,
            node=node,
            price_per_gpu_hour=1_000_000,
        )

    running_pod(0)
    with CaptureQueriesContext(connection) as one:
        page = owner.get("/dashboard/")
    assert b"About 10 h of balance left" in page.content
    for i in range(1, 4):
        running_pod(i)
    with CaptureQueriesContext(connection) as four:
        page = owner.get("/dashboard/")
    assert b"About 2 h of balance left" in page.content  # $10 at $4/h
    assert len(four) == len(one)


@pytest.mark.parametrize(("period", "bars"), [("week", 12), ("month", 12), ("bogus", None)])
def test_dashboard_chart_by_week_and_month(owner, period, bars):
    page = owner.get("/dashboard/", {"period": period})
    assert page.status_code == 200
    points = page.context["spend_points"]
    if bars is None:  # an unknown period falls back to this month by day
        assert page.context["period"] == "day" and len(points) >= 1
    else:
        assert len(points) == bars and page.context["period"] == period


def test_portal_key_with_scopes_and_expiry(owner, user):
    response = owner.post(
        "/api-keys/", {"name": "ro", "scopes": ["read"], "expires_at": "2099-01-01T00:00"}
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(user=user)
    assert key.scopes == ["read"] and key.expires_at.year == 2099
    page = owner.get("/api-keys/").content.decode()
    assert "2099-01-01" in page and "<td>read</td>" in page


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"name": "none"}, "This field is required."),
        ({"name": "old", "scopes": ["read"], "expires_at": "2001-01-01T00:00"}, "future"),
    ],
)
def test_portal_key_without_scopes_or_with_a_past_expiry_is_400(owner, user, data, problem):
    response = owner.post("/api-keys/", data)
    assert response.status_code == 400 and problem in response.content.decode()
    assert not ApiKey.objects.filter(user=user).exists()
