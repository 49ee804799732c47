"""POST /api/v1/users/deposit against the fake Stripe API (real SDK, real HTTP)."""

import pytest

from apps.billing.selectors import wallet_balance
from tests.factories import deliver

pytestmark = pytest.mark.django_db

URL = "/api/v1/users/deposit"


def test_a_deposit_creates_a_checkout_session_and_returns_its_url(
    api_client, user, stripe_fake, settings
):
    api_client.force_authenticate(user)

    response = api_client.post(URL, {"amount_usd": "25.00"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["session_id"].startswith("cs_test_")
    assert body["checkout_url"].startswith(
        "https://checkout.stripe.com/c/pay/" + body["session_id"]
    )
    [call] = stripe_fake.calls()
    assert call.headers["authorization"] == f"Bearer {stripe_fake.api_key}"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    form = call.form
    assert form["mode"] == "payment"
    assert form["line_items"] == [
        {
            "quantity": "1",
            "price_data": {
                "currency": "usd",
                "unit_amount": "2500",
                "product_data": {"name": "GPU Cloud credit ($25.00)"},
            },
        }
    ]
    assert form["client_reference_id"] == str(user.pk)
    assert form["metadata"] == {"user_id": str(user.pk), "amount_micros": "25000000"}
    assert form["success_url"].startswith(settings.SITE_URL)
    assert form["cancel_url"].startswith(settings.SITE_URL)
    assert wallet_balance(user) == 0  # nothing is credited until Stripe says it is paid


def test_paying_the_session_credits_the_wallet_through_the_webhook(
    api_client, client, user, stripe_fake
):
    api_client.force_authenticate(user)
    session_id = api_client.post(URL, {"amount_usd": "12.34"}, format="json").json()["session_id"]

    event = stripe_fake.complete_session(session_id)
    response = deliver(client, event)

    assert response.json()["credited"] is True
    assert wallet_balance(user) == 12_340_000
    balance = api_client.get("/api/v1/users/balance").json()
    assert balance["balance_usd"] == "12.34"


def test_the_idempotency_key_returns_the_same_session(api_client, user, stripe_fake):
    api_client.force_authenticate(user)

    first = api_client.post(URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = api_client.post(URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")

    assert first.status_code == again.status_code == 201
    assert first.json()["session_id"] == again.json()["session_id"]
    assert len(stripe_fake.sessions) == 1
    sent = {call.headers["idempotency-key"] for call in stripe_fake.calls()}
    assert sent == {f"deposit:{user.pk}:abc-1"}  # scoped to the caller


def test_one_users_idempotency_key_never_returns_anothers_session(
    api_client, user, other_user, stripe_fake
):
    api_client.force_authenticate(user)
    mine = api_client.post(URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    api_client.force_authenticate(other_user)
    theirs = api_client.post(URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert mine.json()["session_id"] != theirs.json()["session_id"]


def test_an_idempotency_key_reused_for_another_amount_is_a_422(api_client, user, stripe_fake):
    api_client.force_authenticate(user)
    api_client.post(URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    response = api_client.post(URL, {"amount_usd": "11"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]["message"]


def test_a_bad_idempotency_key_is_a_400(api_client, user, stripe_fake):
    api_client.force_authenticate(user)
    response = api_client.post(
        URL, {"amount_usd": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="x" * 201
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert stripe_fake.calls() == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount_usd": "0"}, "amount_usd"),
        ({"amount_usd": "-10.00"}, "amount_usd"),
        ({"amount_usd": "4.99"}, "amount_usd"),
        ({"amount_usd": "1.234"}, "amount_usd"),
        ({"amount_usd": "10.12345"}, "amount_usd"),
        ({"amount_usd": "20000.00"}, "amount_usd"),
        ({"amount_usd": "10000.01"}, "amount_usd"),
        ({"amount_usd": "ten dollars"}, "amount_usd"),
        ({"amount_usd": "NaN"}, "amount_usd"),
        ({"amount_usd": None}, "amount_usd"),
        ({}, "amount_usd"),
        ({"amount_usd": "25.00", "currency": "eur"}, "currency"),
    ],
)
def test_a_bad_amount_is_a_400_naming_the_field_and_stripe_is_not_called(
    api_client, user, stripe_fake, body, field
):
    api_client.force_authenticate(user)

    response = api_client.post(URL, body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"] and field in error["message"]
    assert stripe_fake.calls() == []


def test_the_limits_themselves_are_accepted(api_client, user, stripe_fake):
    api_client.force_authenticate(user)
    for amount in ("5", "5.00", "10000.00", 42.5):
        response = api_client.post(URL, {"amount_usd": amount}, format="json")
        assert response.status_code == 201, (amount, response.json())


def test_without_a_secret_key_deposits_answer_503_naming_the_setting(api_client, user, settings):
    settings.STRIPE_SECRET_KEY = ""
    api_client.force_authenticate(user)

    response = api_client.post(URL, {"amount_usd": "25.00"}, format="json")

    assert response.status_code == 503
    assert "STRIPE_SECRET_KEY" in response.json()["error"]["message"]


def test_a_key_stripe_refuses_is_a_502_and_charges_nothing(api_client, user, stripe_fake, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_not_the_right_one"
    api_client.force_authenticate(user)

    response = api_client.post(URL, {"amount_usd": "25.00"}, format="json")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "payment_provider_error"
    assert stripe_fake.sessions == {}


def test_deposits_need_a_login(api_client, stripe_fake):
    response = api_client.post(URL, {"amount_usd": "25.00"}, format="json")
    assert response.status_code == 401
    assert stripe_fake.calls() == []
