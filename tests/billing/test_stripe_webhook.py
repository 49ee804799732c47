"""POST /webhooks/stripe: only a verified, fresh, paid checkout event credits, and only once."""

import json

import pytest
from django.test import Client

from apps.billing.models import AccountKind, LedgerAccount, Transaction, TransactionKind
from apps.billing.selectors import wallet_balance
from apps.billing.services import ledger_check
from tests.factories import WEBHOOK_SECRET, deliver, paid_event, paid_session, stale
from tests.fakes.stripe_server import checkout_event, sign_payload

pytestmark = pytest.mark.django_db

CENTS = 2_500
MICROS = CENTS * 10_000


def topups():
    return Transaction.objects.filter(kind=TransactionKind.TOPUP)


def test_a_signed_paid_checkout_event_credits_the_wallet(client, user):
    event = paid_event(user=user, cents=CENTS)

    response = deliver(client, event)

    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "handled": True, "credited": True}
    assert wallet_balance(user) == MICROS
    [posted] = topups()
    assert posted.idempotency_key == f"stripe:event:{event['id']}"
    assert posted.metadata["stripe_session_id"] == event["data"]["object"]["id"]
    clearing = LedgerAccount.objects.get(kind=AccountKind.STRIPE_CLEARING)
    assert clearing.balance == -MICROS
    assert ledger_check() == []


def test_the_same_event_delivered_twice_credits_once(client, user):
    event = paid_event(user=user, cents=CENTS)

    first = deliver(client, event)
    second = deliver(client, event)

    assert first.json()["credited"] is True
    assert second.status_code == 200 and second.json()["credited"] is False
    assert wallet_balance(user) == MICROS
    assert topups().count() == 1


def test_another_event_for_the_same_session_credits_once(client, user):
    completed = paid_event(user=user, cents=CENTS)
    session = completed["data"]["object"]
    async_succeeded = checkout_event(session, event_type="checkout.session.async_payment_succeeded")

    assert deliver(client, completed).json()["credited"] is True
    again = deliver(client, async_succeeded)

    assert again.status_code == 200 and again.json()["credited"] is False
    assert wallet_balance(user) == MICROS
    assert topups().count() == 1


def test_an_unpaid_completed_session_credits_nothing_until_it_is_paid(client, user):
    session = paid_session(user=user, cents=CENTS, payment_status="unpaid")
    response = deliver(client, checkout_event(session))
    assert response.status_code == 200 and response.json()["credited"] is False
    assert wallet_balance(user) == 0

    session["payment_status"] = "paid"
    later = deliver(
        client, checkout_event(session, event_type="checkout.session.async_payment_succeeded")
    )
    assert later.json()["credited"] is True
    assert wallet_balance(user) == MICROS


def test_a_tampered_payload_is_refused_and_credits_nothing(client, user):
    event = paid_event(user=user, cents=CENTS)
    signed = json.dumps(event).encode()
    header = sign_payload(signed, WEBHOOK_SECRET)
    event["data"]["object"]["amount_total"] = CENTS * 100
    tampered = json.dumps(event).encode()

    response = deliver(client, event, body=tampered, signature=header)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert "signature" in response.json()["error"]["message"].lower()
    assert wallet_balance(user) == 0 and not topups().exists()


def test_a_stale_timestamp_is_refused_and_credits_nothing(client, user, settings):
    event = paid_event(user=user, cents=CENTS)

    response = deliver(client, event, timestamp=stale(settings.STRIPE_WEBHOOK_TOLERANCE_S + 5))

    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]["message"]
    assert wallet_balance(user) == 0
    fresh_enough = deliver(client, event, timestamp=stale(settings.STRIPE_WEBHOOK_TOLERANCE_S - 30))
    assert fresh_enough.json()["credited"] is True


def test_a_wrong_secret_is_refused(client, user):
    response = deliver(client, paid_event(user=user, cents=CENTS), secret="whsec_not_ours")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    assert wallet_balance(user) == 0


@pytest.mark.parametrize(
    "signature",
    ["", "garbage", "t=notanumber,v1=abc", "t=123", "v1=deadbeef"],
)
def test_malformed_signature_headers_are_refused(client, user, signature):
    event = paid_event(user=user, cents=CENTS)
    raw = json.dumps(event).encode()
    response = client.post(
        "/webhooks/stripe",
        data=raw,
        content_type="application/json",
        **({"HTTP_STRIPE_SIGNATURE": signature} if signature else {}),
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Stripe-Signature rejected")
    assert wallet_balance(user) == 0


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a Stripe event"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_signed_but_malformed_body_is_refused(client, body, message):
    signature = (
        sign_payload(body.decode("latin-1"), WEBHOOK_SECRET) if body != b"\xff\xfe" else "t=1,v1=x"
    )
    response = deliver(client, None, body=body, signature=signature)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount_total": None},
        {"amount_total": -100},
        {"amount_total": "2500"},
        {"currency": "eur"},
        {"object": "payment_intent"},
    ],
)
def test_a_verified_event_with_unusable_content_is_refused(client, user, overrides):
    session = paid_session(user=user, cents=CENTS, **overrides)
    response = deliver(client, checkout_event(session))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    assert wallet_balance(user) == 0


def test_a_session_that_is_not_ours_is_acknowledged_and_ignored(client, user):
    session = paid_session(user=user, cents=CENTS, client_reference_id=None, metadata={})
    response = deliver(client, checkout_event(session))
    assert response.status_code == 200 and response.json()["credited"] is False
    unknown = paid_session(user=user, cents=CENTS, client_reference_id="not-a-uuid", metadata={})
    assert deliver(client, checkout_event(unknown)).json()["credited"] is False
    assert not topups().exists()


def test_unknown_event_types_are_acknowledged_and_ignored(client, user):
    event = checkout_event(
        {"id": "pi_1", "object": "payment_intent"}, event_type="payment_intent.created"
    )
    response = deliver(client, event)
    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": False}
    assert not Transaction.objects.exists()


def test_the_webhook_needs_no_login_or_csrf_token_but_only_takes_post(user):
    strict = Client(enforce_csrf_checks=True)
    assert deliver(strict, paid_event(user=user, cents=CENTS)).status_code == 200
    assert strict.get("/webhooks/stripe").status_code == 405


def test_without_a_webhook_secret_nothing_is_accepted(client, user, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = deliver(client, paid_event(user=user, cents=CENTS), secret="anything")
    assert response.status_code == 503
    assert "STRIPE_WEBHOOK_SECRET" in response.json()["error"]["message"]
    assert wallet_balance(user) == 0
