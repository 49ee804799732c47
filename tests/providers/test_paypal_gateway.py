"""PayPal payouts end to end against a local fake of PayPal's API: OAuth2 token, one batch per
payout (our payout id as sender_batch_id), settlement by polling the batch; retries after a
5xx or an expired token; a duplicate send finds the first batch; a failed item returns the
money to the provider's available balance."""

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import ledger_check
from apps.providers.gateways.paypal import PayPalGateway, PayPalPayoutsClient
from apps.providers.models import PayoutStatus
from apps.providers.selectors import provider_balances
from apps.providers.services import (
    payout_approve,
    payout_request,
    payout_send,
    payout_settle,
    payouts_send_due,
    payouts_settle_due,
)
from tests.factories import earn

pytestmark = pytest.mark.django_db

PAYPAL = {"email": "farm@example.com"}


@pytest.fixture
def approved(provider, operator, paypal):
    """A $20 PayPal payout, approved (not yet sent)."""
    earn(provider, 50_000_000)
    payout = payout_request(
        provider=provider, amount=20_000_000, method="PAYPAL", details=PAYPAL
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)
    return payout


def test_sent_as_one_batch_then_paid_when_paypal_says_success(approved, provider, paypal):
    sent = payout_send(payout_id=approved.pk)

    assert sent.status == PayoutStatus.SENT
    batch = paypal.batch_for(str(approved.pk))
    assert sent.gateway_ref == batch["batch_header"]["payout_batch_id"]
    item = batch["items"][0]["payout_item"]
    assert item["amount"] == {"value": "20.00", "currency": "USD"}
    assert (item["receiver"], item["recipient_type"]) == ("farm@example.com", "EMAIL")
    # The token call used HTTP Basic and the form grant; the payout call the bearer token.
    token_call = next(r for r in paypal.requests if r[1] == "/v1/oauth2/token")
    assert token_call[2]["authorization"].startswith("Basic ")
    assert token_call[3] == "grant_type=client_credentials"

    assert payout_settle(payout_id=approved.pk).status == PayoutStatus.SENT  # still pending
    paypal.settle(sent.gateway_ref, "SUCCESS")
    assert payouts_settle_due() == 1

    approved.refresh_from_db()
    assert approved.status == PayoutStatus.PAID
    assert approved.tx_hash == paypal.batches[sent.gateway_ref]["items"][0]["transaction_id"]
    assert LedgerAccount.objects.get(kind=AccountKind.PAYOUTS_SENT).balance == 20_000_000
    assert provider_balances(provider).paid == 20_000_000
    assert ledger_check() == []


def test_a_failed_paypal_item_restores_availability(approved, provider, paypal):
    assert provider_balances(provider).available == 30_000_000
    sent = payout_send(payout_id=approved.pk)
    paypal.settle(sent.gateway_ref, "FAILED")

    settled = payout_settle(payout_id=approved.pk)

    assert settled.status == PayoutStatus.FAILED
    assert "Receiver is unregistered" in settled.status_reason
    balances = provider_balances(provider)
    assert (balances.available, balances.pending, balances.paid) == (50_000_000, 0, 0)
    assert LedgerAccount.objects.get(kind=AccountKind.PAYOUTS_CLEARING).balance == 0
    assert ledger_check() == []


def test_a_5xx_leaves_it_approved_and_the_next_sweep_sends_it(approved, paypal):
    paypal.fail_next(503)
    first = payout_send(payout_id=approved.pk)
    assert first.status == PayoutStatus.APPROVED
    assert "will retry" in first.status_reason

    assert payouts_send_due() == 0  # it waits a minute before trying again
    assert payouts_send_due(now=timezone.now() + timedelta(minutes=2)) == 1
    approved.refresh_from_db()
    assert approved.status == PayoutStatus.SENT and approved.attempts == 2
    assert len(paypal.batches) == 1


def test_an_expired_token_is_renewed_once(paypal):
    client = PayPalPayoutsClient(
        base_url=paypal.base_url, client_id=paypal.client_id, client_secret=paypal.client_secret
    )
    first = client.create_batch(
        sender_batch_id="b-1", receiver_email="a@example.com", value="10.00", note="n", item_id="i"
    )
    paypal.expire_tokens()
    assert (
        client.get_batch(first["payout_batch_id"])["batch_header"]["payout_batch_id"]
        == (first["payout_batch_id"])
    )
    assert paypal.token_requests == 2


def test_sending_twice_finds_the_first_batch(paypal, approved):
    gateway = PayPalGateway(
        PayPalPayoutsClient(
            base_url=paypal.base_url,
            client_id=paypal.client_id,
            client_secret=paypal.client_secret,
        )
    )
    first = gateway.send(approved)
    second = gateway.send(approved)  # PayPal answers USER_BUSINESS_ERROR + link
    assert first.reference == second.reference
    assert len(paypal.batches) == 1


def test_paypal_refusing_the_receiver_fails_the_payout(provider, operator, paypal):
    earn(provider, 50_000_000)
    # Our validation accepts it; PayPal's stricter one does not (no dot in the domain).
    payout = payout_request(
        provider=provider, amount=20_000_000, method="PAYPAL", details={"email": "a@localhost"}
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)

    failed = payout_send(payout_id=payout.pk)

    assert failed.status == PayoutStatus.FAILED
    assert "VALIDATION_ERROR" in failed.status_reason
    assert provider_balances(provider).available == 50_000_000


def test_wrong_credentials_keep_it_approved(approved, paypal, settings):
    settings.PAYPAL_CLIENT_SECRET = "wrong"
    assert payout_send(payout_id=approved.pk).status == PayoutStatus.APPROVED
    assert not paypal.batches


def test_without_paypal_settings_it_waits_without_spending_attempts(approved, settings):
    settings.PAYPAL_CLIENT_ID = settings.PAYPAL_CLIENT_SECRET = ""
    for _ in range(2):
        waiting = payout_send(payout_id=approved.pk)
    assert (waiting.status, waiting.attempts) == (PayoutStatus.APPROVED, 0)
    assert "PAYPAL_CLIENT_ID" in waiting.status_reason
    assert waiting.events.count() == 1  # only the approval
