"""Portal pages for money: top-up through the fake Stripe (credited only by the signed
webhook), the return page watching for the credit, transactions and usage with filters and
CSV; owner / other tenant / anonymous."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import AccountKind, Transaction, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_for
from tests.factories import deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(client, user):
    client.force_login(user)
    return client


def topup(user, micros, *, key=None, memo="test top-up"):
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=key or f"test:{uuid.uuid4()}",
        memo=memo,
        lines=[
            (platform_account(AccountKind.STRIPE_CLEARING), -micros),
            (wallet_for(user), micros),
        ],
    )


def charge(user, micros, memo="usage"):
    ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=f"test:{uuid.uuid4()}",
        memo=memo,
        lines=[
            (wallet_for(user), -micros),
            (platform_account(AccountKind.PLATFORM_REVENUE), micros),
        ],
    )


def test_topup_opens_checkout_then_the_webhook_credits_and_the_page_sees_it(
    owner, user, stripe_fake, settings
):
    key = uuid.uuid4().hex

    page = owner.post("/billing/topup/", {"amount_usd": "25.00", "idempotency_key": key})
    again = owner.post("/billing/topup/", {"amount_usd": "25.00", "idempotency_key": key})

    assert page.status_code == 200
    (session_id,) = stripe_fake.sessions  # the double submit replayed the same session
    session = stripe_fake.sessions[session_id]
    assert f'data-redirect-url="{session["url"]}"' in page.content.decode()
    assert session["url"] in again.content.decode()
    assert session["amount_total"] == 2500
    assert session["client_reference_id"] == str(user.pk)
    assert not Transaction.objects.exists()  # nothing until Stripe says it is paid

    done_path = "/billing/topup/done?session_id=" + session_id
    waiting = owner.get(done_path, HTTP_X_REQUESTED_WITH="fetch")
    assert b"data-poll-url" in waiting.content and b"Waiting for Stripe" in waiting.content

    event = stripe_fake.complete_session(session_id)
    assert deliver(Client(), event).status_code == 200

    credited = owner.get(done_path, HTTP_X_REQUESTED_WITH="fetch")
    assert b"data-poll-url" not in credited.content
    assert b"$25.00" in credited.content
    dashboard = owner.get("/dashboard/")
    assert b"$25.00" in dashboard.content


def test_topup_session_of_another_user_is_never_shown_as_credited(owner, other_user):
    theirs = f"cs_test_{uuid.uuid4().hex}"
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=f"stripe:event:{uuid.uuid4()}",
        external_ref=f"stripe:checkout_session:{theirs}",
        memo="their top-up",
        lines=[(platform_account(AccountKind.STRIPE_CLEARING), -5), (wallet_for(other_user), 5)],
    )
    page = owner.get("/billing/topup/done?session_id=" + theirs)
    assert b"their top-up" not in page.content
    assert b"Waiting for Stripe" in page.content


@pytest.mark.parametrize("amount", ["4.99", "10000.01", "abc", "5.001", ""])
def test_bad_topup_amount_is_400_and_calls_nothing(owner, stripe_fake, amount):
    response = owner.post("/billing/topup/", {"amount_usd": amount, "idempotency_key": "k"})
    assert response.status_code == 400
    assert "amount_usd" in response.context["form"].errors
    assert stripe_fake.calls() == []


def test_topup_without_stripe_configured_says_so(owner):
    response = owner.post("/billing/topup/", {"amount_usd": "25", "idempotency_key": "k"})
    assert response.status_code == 400
    assert "STRIPE_SECRET_KEY" in " ".join(response.context["form"].non_field_errors())


def test_transactions_filter_by_kind_and_date_and_export_csv(owner, user, other_user):
    topup(user, 25_000_000, memo="my top-up")
    charge(user, 1_234_567, memo="pod usage")
    topup(other_user, 7_000_000, memo="someone else's")

    everything = owner.get("/billing/transactions/")
    usage_only = owner.get("/billing/transactions/", {"kind": "USAGE"})
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    future = owner.get("/billing/transactions/", {"since": tomorrow})
    exported = owner.get("/billing/transactions/", {"format": "csv"})

    assert b"my top-up" in everything.content and b"pod usage" in everything.content
    assert b"someone else" not in everything.content
    assert b"my top-up" not in usage_only.content and b"pod usage" in usage_only.content
    assert b"No transactions match" in future.content
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert [(r["kind"], r["amount_micros"]) for r in rows] == [
        ("USAGE", "-1234567"),
        ("TOPUP", "25000000"),
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"kind": "BRIBE"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
    ],
)
def test_bad_filters_are_400_naming_the_field(owner, query, field):
    response = owner.get("/billing/transactions/", query)
    assert response.status_code == 400
    assert field in response.context["form"].errors


def test_usage_page_filters_by_pod_and_exports_csv(owner, user):
    from apps.pods.models import Pod, UsageRecord
    from tests.factories import make_node

    node = make_node()
    pods = [
        Pod.objects.create(owner=user, name=f"p{i}", image="x", gpu_model="CPU", gpu_count=0)
        for i in range(2)
    ]
    start = timezone.now() - timedelta(minutes=5)
    for i, pod in enumerate(pods):
        UsageRecord.objects.create(
            pod=pod,
            owner=user,
            node=node,
            period_start=start,
            period_end=start + timedelta(seconds=60),
            seconds=60,
            gpu_count=0,
            price_per_gpu_hour=360_000,
            amount=6_000 * (i + 1),
        )

    page = owner.get("/billing/usage/", {"pod": str(pods[1].pk)})
    exported = owner.get("/billing/usage/", {"format": "csv"})
    bad = owner.get("/billing/usage/", {"pod": "not-a-uuid"})

    assert b"p1" in page.content and b">p0<" not in page.content
    assert b"<strong>$0.012000</strong> for 60 s" in page.content
    assert b"0.012000" in page.content
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert sorted(r["amount_micros"] for r in rows) == ["12000", "6000"]
    assert bad.status_code == 400 and "pod" in bad.context["form"].errors


def test_transactions_page_queries_do_not_grow(owner, user):
    topup(user, 1_000_000)
    with CaptureQueriesContext(connection) as one:
        owner.get("/billing/transactions/")
    for _ in range(10):
        charge(user, 10)
    with CaptureQueriesContext(connection) as eleven:
        owner.get("/billing/transactions/")
    assert len(eleven) == len(one)


def test_anonymous_is_sent_to_log_in(client):
    for path in ("/billing/topup/", "/billing/transactions/", "/billing/usage/", "/dashboard/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_usage_page_queries_do_not_grow(owner, user):
    from apps.pods.models import Pod, UsageRecord
    from tests.factories import make_node

    node = make_node()
    start = timezone.now() - timedelta(hours=1)

    def record(i):
        pod = Pod.objects.create(owner=user, name=f"p{i}", image="x", gpu_model="CPU", gpu_count=0)
        UsageRecord.objects.create(
            pod=pod,
            owner=user,
            node=node,
            period_start=start + timedelta(seconds=i),
            period_end=start + timedelta(seconds=i + 1),
            seconds=1,
            gpu_count=0,
            price_per_gpu_hour=360_000,
            amount=100,
        )

    record(0)
    with CaptureQueriesContext(connection) as one:
        owner.get("/billing/usage/")
    for i in range(1, 10):
        record(i)
    with CaptureQueriesContext(connection) as ten:
        owner.get("/billing/usage/")
    assert len(ten) == len(one)


def test_spend_limits_page_sets_and_clears_them_like_the_api(owner, user):
    from apps.billing.models import SpendLimit

    saved = owner.post("/billing/limits/", {"monthly_cap_usd": "50", "max_hourly_burn_usd": "2.5"})
    assert saved.status_code == 302
    limit = SpendLimit.objects.get(user=user)
    assert (limit.monthly_cap, limit.max_hourly_burn) == (50_000_000, 2_500_000)
    api = owner.get("/api/v1/users/spend-limits").json()
    assert api["monthly_cap_usd"] == "50.00" and api["max_hourly_burn_usd"] == "2.50"
    assert b'value="50.00"' in owner.get("/billing/limits/").content

    bad = owner.post("/billing/limits/", {"monthly_cap_usd": "0.5", "max_hourly_burn_usd": ""})
    assert bad.status_code == 400 and "monthly_cap_usd" in bad.context["form"].errors
    limit.refresh_from_db()
    assert limit.monthly_cap == 50_000_000

    owner.post("/billing/limits/", {"monthly_cap_usd": "", "max_hourly_burn_usd": ""})
    limit.refresh_from_db()
    assert (limit.monthly_cap, limit.max_hourly_burn) == (None, None)
