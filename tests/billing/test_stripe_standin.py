"""The demo's Stripe Checkout stand-in (apps/billing/stripe_standin): our real deposit code and
the real `stripe` SDK create a session on it, a person pays on its checkout page with a test
card, and it delivers the signed `checkout.session.completed` webhook to our live server, which
credits the wallet through the normal verified path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import stripe

from apps.billing.selectors import wallet_balance
from apps.billing.services.topups import stripe_client
from apps.billing.stripe_standin import RunningStandin, sign_payload
from tests.factories import WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_standin_0123456789abcdef"


@pytest.fixture
def standin(live_server, settings):
    with RunningStandin(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=f"{live_server.url}/webhooks/stripe",
    ) as running:
        settings.STRIPE_SECRET_KEY = API_KEY
        settings.STRIPE_API_BASE = running.url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        yield running


@pytest.mark.django_db(transaction=True)
def test_paying_on_the_standin_page_credits_the_wallet_through_the_signed_webhook(
    live_server, standin, user
):
    from apps.accounts.services import api_key_create

    key = api_key_create(user=user, name="t").raw_key
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    deposit = api.post("/api/v1/users/deposit", json={"amount_usd": "25.00"})
    assert deposit.status_code == 201, deposit.text
    url, session_id = deposit.json()["checkout_url"], deposit.json()["session_id"]
    assert url == f"{standin.url}/c/pay/{session_id}"

    page = httpx.get(url)
    assert page.status_code == 200
    assert "$25.00" in page.text and "4242 4242 4242 4242" in page.text

    declined = httpx.post(url, data={"card_number": "4000 0000 0000 0002", "cvc": "123"})
    assert declined.status_code == 200  # the page again, saying why
    assert "Your card was declined." in declined.text
    declined = httpx.post(
        url, data={"card_number": "4000000000000002"}, headers={"Accept": "application/json"}
    )
    assert declined.status_code == 402
    assert declined.json()["error"]["decline_code"] == "generic_decline"
    wrong = httpx.post(url, data={"card_number": "1234"}, headers={"Accept": "application/json"})
    assert wrong.status_code == 402 and wrong.json()["error"]["code"] == "incorrect_number"
    assert standin.standin.deliveries == []
    assert api.get("/api/v1/users/balance").json()["balance_micros"] == 0
    retrieved = stripe_client().v1.checkout.sessions.retrieve(session_id)
    assert (retrieved.status, retrieved.payment_status) == ("open", "unpaid")

    paid = httpx.post(url, data={"card_number": "4242 4242 4242 4242", "expiry": "12 / 34"})
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/billing/topup/done?session_id={session_id}")
    [(event_id, status)] = standin.standin.deliveries
    assert event_id.startswith("evt_test_") and status == 200
    assert wallet_balance(user) == 25_000_000
    retrieved = stripe_client().v1.checkout.sessions.retrieve(session_id)
    assert (retrieved.status, retrieved.payment_status) == ("complete", "paid")

    again = httpx.post(
        url, data={"card_number": "4242424242424242"}, headers={"Accept": "application/json"}
    )
    assert again.status_code == 200 and again.json()["payment_status"] == "paid"
    assert len(standin.standin.deliveries) == 1  # paying a complete session changes nothing
    assert wallet_balance(user) == 25_000_000
    charges = stripe_client().v1.charges.list(params={"limit": 10})
    assert [c.amount for c in charges.data] == [2500]


def test_the_standin_refuses_a_wrong_key_and_replays_an_idempotent_create(settings):
    with RunningStandin(
        api_key=API_KEY, webhook_secret="whsec_x", webhook_url="http://127.0.0.1:9/"
    ) as running:
        settings.STRIPE_API_BASE = running.url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.STRIPE_SECRET_KEY = "sk_test_wrong"
        with pytest.raises(stripe.AuthenticationError):
            stripe_client().v1.checkout.sessions.retrieve("cs_test_x")
        settings.STRIPE_SECRET_KEY = API_KEY
        params = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 500,
                        "product_data": {"name": "x"},
                    },
                }
            ],
        }
        first = stripe_client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": "k1"}
        )
        second = stripe_client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": "k1"}
        )
        assert first.id == second.id and first.amount_total == 500
        with pytest.raises(stripe.IdempotencyError):
            stripe_client().v1.checkout.sessions.create(
                params={**params, "client_reference_id": "other"}, options={"idempotency_key": "k1"}
            )
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client().v1.checkout.sessions.retrieve("cs_test_missing")


def test_its_signature_is_what_the_stripe_sdk_verifies():
    body = json.dumps({"id": "evt_1", "object": "event"}).encode()
    header = sign_payload(body, WEBHOOK_SECRET)
    assert stripe.WebhookSignature.verify_header(
        body.decode(), header, WEBHOOK_SECRET, tolerance=300
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_other", tolerance=300)


def _settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
        "from django.conf import settings;"
        "print(settings.STRIPE_STANDIN, settings.STRIPE_API_BASE, bool(settings.STRIPE_SECRET_KEY))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_the_standin_is_never_on_unless_the_demo_settings_say_so():
    off = _settings_in_subprocess()
    assert off.stdout.split() == ["False", "https://api.stripe.com", "False"], off.stderr
    on = _settings_in_subprocess(
        STRIPE_STANDIN="true",
        STRIPE_STANDIN_SECRET_KEY=API_KEY,
        STRIPE_STANDIN_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    assert on.stdout.split() == ["True", "http://127.0.0.1:7810", "True"], on.stderr
    live_key = _settings_in_subprocess(
        STRIPE_STANDIN="true",
        STRIPE_STANDIN_SECRET_KEY="sk_live_abc",
        STRIPE_STANDIN_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    assert live_key.returncode != 0 and "sk_test_" in live_key.stderr
