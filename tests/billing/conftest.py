import json
import time
import uuid

import pytest

from tests.fakes.stripe_server import checkout_event, running_stripe, sign_payload

WEBHOOK_SECRET = "whsec_test_0123456789abcdefghijklmnop"


@pytest.fixture(autouse=True)
def _billing_settings(settings):
    # Users are created in nearly every test here; the real hasher costs ~0.25 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_SECRET_KEY = ""
    settings.BILLING_OVERDRAFT_MICROS = 0


@pytest.fixture
def stripe_fake(settings):
    """The fake Stripe API on a free local port, with the SDK pointed at it."""
    with running_stripe() as fake:
        settings.STRIPE_SECRET_KEY = fake.api_key
        settings.STRIPE_API_BASE = fake.base_url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        yield fake


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(
        email="operator@example.com", password="s3cret-pass-3", is_staff=True
    )


def paid_session(*, user, cents, session_id=None, **overrides):
    """A completed, paid Checkout Session as it appears inside Stripe's event."""
    session = {
        "id": session_id or f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "amount_subtotal": cents,
        "amount_total": cents,
        "client_reference_id": str(user.pk),
        "currency": "usd",
        "customer_email": user.email,
        "livemode": False,
        "metadata": {"user_id": str(user.pk), "amount_micros": str(cents * 10_000)},
        "mode": "payment",
        "payment_intent": f"pi_test_{uuid.uuid4().hex[:24]}",
        "payment_status": "paid",
        "status": "complete",
    }
    session.update(overrides)
    return session


def deliver(client, event, *, secret=WEBHOOK_SECRET, timestamp=None, body=None, signature=None):
    """POST an event to our webhook as Stripe does: raw JSON, signed."""
    raw = body if body is not None else json.dumps(event).encode()
    header = signature if signature is not None else sign_payload(raw, secret, timestamp)
    return client.post(
        "/webhooks/stripe", data=raw, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def paid_event(*, user, cents, session_id=None, event_id=None):
    return checkout_event(
        paid_session(user=user, cents=cents, session_id=session_id), event_id=event_id
    )


def stale(seconds_ago):
    return int(time.time()) - seconds_ago
