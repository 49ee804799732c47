"""A body nested deeper than the JSON parser can follow is a 400 on every JSON endpoint, never a
500: DRF views (anonymous and authenticated) through the project's parser, and the Stripe
webhook (a plain Django view) through the same reader."""

import pytest

from tests.fakes.stripe_server import sign_payload

pytestmark = pytest.mark.django_db

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/nodes/register"]
)
def test_anonymous_endpoints_answer_400(client, path, body):
    response = client.post(path, data=body, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert "too deeply" in error["message"]


def test_authenticated_endpoint_answers_400(client, user):
    client.force_login(user)

    response = client.post("/api/v1/auth/api-keys", data=DEEP, content_type="application/json")

    assert response.status_code == 400
    assert "too deeply" in response.json()["error"]["message"]
    assert user.api_keys.count() == 0


def test_signed_stripe_webhook_answers_400(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = secret = "whsec_test_depth_0123456789abcdef"

    response = client.post(
        "/webhooks/stripe",
        data=DEEP,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(DEEP, secret, None),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
