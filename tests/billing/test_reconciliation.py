"""The daily reconciliation of the ledger against Stripe, with the real SDK talking to the local
Stripe stand-in: a charge with no top-up, a top-up with no charge, different amounts, and a
refund made on Stripe alone are each flagged; matching sides are not."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.billing.models import MismatchKind, ReconciliationMismatch, StripeReconciliation
from apps.billing.services import checkout_session_create, stripe_reconcile
from apps.billing.tasks import reconcile_stripe_task
from apps.core.schedule import SCHEDULE
from tests.factories import deliver, paid_event

pytestmark = pytest.mark.django_db

USD = 1_000_000


def today() -> tuple[datetime, datetime]:
    start = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def pay_through_checkout(client, stripe_fake, user, micros):
    """A deposit as it really happens: a Checkout Session, the customer pays (Stripe makes the
    charge), the webhook credits the wallet."""
    session = checkout_session_create(user=user, amount_micros=micros)
    event = stripe_fake.complete_session(session.session_id)
    assert deliver(client, event).json()["credited"] is True
    return event


def kinds(report: StripeReconciliation) -> list[str]:
    return sorted(report.mismatches.values_list("kind", flat=True))


def test_matching_charges_and_top_ups_flag_nothing(client, user, stripe_fake):
    pay_through_checkout(client, stripe_fake, user, 25 * USD)
    pay_through_checkout(client, stripe_fake, user, 5 * USD)

    report = stripe_reconcile(start=today()[0], end=today()[1])

    assert (report.stripe_charges, report.ledger_topups) == (2, 2)
    assert kinds(report) == []


def test_a_stripe_charge_with_no_ledger_top_up_is_flagged(client, user, stripe_fake, caplog):
    pay_through_checkout(client, stripe_fake, user, 25 * USD)
    orphan = stripe_fake.add_charge(amount=1_999)  # paid, but no webhook ever credited it

    with caplog.at_level(logging.ERROR, logger="apps.billing.services.reconciliation"):
        report = stripe_reconcile(start=today()[0], end=today()[1])

    [mismatch] = report.mismatches.all()
    assert (mismatch.kind, mismatch.stripe_id, mismatch.stripe_amount) == (
        MismatchKind.CHARGE_NOT_IN_LEDGER,
        orphan["id"],
        19_990_000,
    )
    assert orphan["id"] in caplog.text and "no ledger top-up" in caplog.text


def test_a_ledger_top_up_with_no_stripe_charge_is_flagged(client, user, stripe_fake):
    pay_through_checkout(client, stripe_fake, user, 25 * USD)
    # A credited event whose payment Stripe has no record of (forged with a leaked secret,
    # or a charge since deleted in test mode).
    assert deliver(client, paid_event(user=user, cents=4_200)).json()["credited"] is True

    report = stripe_reconcile(start=today()[0], end=today()[1])

    [mismatch] = report.mismatches.all()
    assert mismatch.kind == MismatchKind.TOPUP_NOT_IN_STRIPE
    assert mismatch.ledger_amount == 42 * USD and mismatch.transaction is not None
    assert mismatch.transaction.external_ref.startswith("stripe:checkout_session:")


def test_a_top_up_for_another_amount_than_charged_is_flagged(client, user, stripe_fake):
    session = checkout_session_create(user=user, amount_micros=10 * USD)
    event = stripe_fake.complete_session(session.session_id)
    event["data"]["object"]["amount_total"] = 100_000  # credited $1,000 for a $10 charge
    deliver(client, event)

    report = stripe_reconcile(start=today()[0], end=today()[1])

    [mismatch] = report.mismatches.all()
    assert (mismatch.kind, mismatch.stripe_amount, mismatch.ledger_amount) == (
        MismatchKind.AMOUNT_DIFFERS,
        10 * USD,
        1_000 * USD,
    )


def test_a_refund_made_on_stripe_alone_is_flagged(client, user, stripe_fake):
    pay_through_checkout(client, stripe_fake, user, 25 * USD)
    [charge] = stripe_fake.charges.values()
    refund = stripe_fake.refund(charge["id"], amount=500)  # $5 back from the Dashboard

    report = stripe_reconcile(start=today()[0], end=today()[1])

    [mismatch] = report.mismatches.all()
    assert (mismatch.kind, mismatch.stripe_id, mismatch.stripe_amount) == (
        MismatchKind.REFUND_NOT_IN_LEDGER,
        refund["id"],
        5 * USD,
    )


def test_outside_the_window_nothing_is_flagged_and_a_rerun_replaces_the_report(
    client, user, stripe_fake
):
    start, end = today()
    stripe_fake.add_charge(amount=700, created=int((start - timedelta(days=1)).timestamp()))

    assert kinds(stripe_reconcile(start=start, end=end)) == []
    yesterday = stripe_reconcile(start=start - timedelta(days=1), end=start)
    assert kinds(yesterday) == [MismatchKind.CHARGE_NOT_IN_LEDGER]
    again = stripe_reconcile(start=start - timedelta(days=1), end=start)
    assert again.pk == yesterday.pk and kinds(again) == [MismatchKind.CHARGE_NOT_IN_LEDGER]
    assert ReconciliationMismatch.objects.count() == 1


def test_every_page_of_stripe_is_read(client, user, stripe_fake):
    for _ in range(230):
        stripe_fake.add_charge(amount=100)

    report = stripe_reconcile(start=today()[0], end=today()[1])

    assert report.stripe_charges == 230 and report.mismatches.count() == 230
    pages = stripe_fake.calls("/v1/charges", method="GET")
    assert len(pages) == 3  # 100 + 100 + 30, each after the last id of the page before


def test_the_daily_task_is_scheduled_and_reconciles_yesterday(client, user, stripe_fake):
    assert any(e.task == "billing.reconcile_stripe" and e.every_seconds == 86400 for e in SCHEDULE)
    start, _ = today()
    stripe_fake.add_charge(amount=300, created=int((start - timedelta(hours=2)).timestamp()))

    assert reconcile_stripe_task() == 1
    assert StripeReconciliation.objects.get().window_start == start - timedelta(days=1)
    assert reconcile_stripe_task(day=start.date().isoformat()) == 0


def test_without_stripe_the_task_says_so_and_records_nothing(settings, caplog):
    settings.STRIPE_SECRET_KEY = ""
    with caplog.at_level(logging.WARNING, logger="apps.billing.tasks"):
        assert reconcile_stripe_task() is None
    assert "STRIPE_SECRET_KEY" in caplog.text
    assert not StripeReconciliation.objects.exists()
