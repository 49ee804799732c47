"""Registering webhook endpoints: the secret shown once (and nowhere in the database), private
addresses refused in production, owner / other tenant / anonymous, and the delivery list's
query count."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from apps.webhooks.services import endpoint_create, event_emit
from tests.support import all_database_text

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/endpoints"


@pytest.fixture
def owner(api_client, user, webhook_settings):
    api_client.force_authenticate(user)
    return api_client


def test_create_shows_the_secret_once_and_stores_no_secret(owner):
    response = owner.post(URL, {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["secret"].startswith(body["secret_prefix"])
    assert body["event_types"] == [
        "pod.status_changed",
        "deployment.status_changed",
        "balance.low",
        "payout.status_changed",
        "node.offline",
    ]
    assert body["secret"] not in all_database_text()
    listing = owner.get(URL).json()
    assert [e["id"] for e in listing] == [body["id"]] and "secret" not in listing[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://192.168.0.10/hook",
        "ftp://example.com/hook",
    ],
)
def test_private_addresses_are_refused_in_production(owner, webhook_settings, url):
    webhook_settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    response = owner.post(URL, {"url": url}, format="json")
    assert response.status_code == 400, response.json()
    assert "url" in response.json()["error"]["fields"]
    assert not WebhookEndpoint.objects.exists()


def test_unknown_event_type_is_400(owner):
    response = owner.post(
        URL, {"url": "http://127.0.0.1:9/h", "event_types": ["pod.exploded"]}, format="json"
    )
    assert response.status_code == 400
    assert "event_types[0]" in response.json()["error"]["fields"]


def test_other_tenant_gets_404_and_anonymous_401(api_client, user, other_user, webhook_settings):
    endpoint = endpoint_create(user=user, url="http://127.0.0.1:9/h").endpoint
    api_client.force_authenticate(other_user)
    assert api_client.get(f"{URL}/{endpoint.pk}").status_code == 404
    assert api_client.get(f"{URL}/{endpoint.pk}/deliveries").status_code == 404
    assert api_client.delete(f"{URL}/{endpoint.pk}").status_code == 404
    assert api_client.get(URL).json() == []
    api_client.force_authenticate(None)
    assert api_client.get(URL).status_code == 401
    endpoint.refresh_from_db()
    assert endpoint.is_active


def test_delete_disables_and_events_stop(owner, user):
    created = owner.post(URL, {"url": "http://127.0.0.1:9/h"}, format="json").json()
    assert owner.delete(f"{URL}/{created['id']}").status_code == 204
    assert not event_emit(user_id=user.pk, type="balance.low", data={}, dedupe_key="k1")
    assert not WebhookEvent.objects.exists()


def test_an_event_is_recorded_once_per_key(user, webhook_settings):
    endpoint_create(user=user, url="http://127.0.0.1:9/h")
    assert event_emit(user_id=user.pk, type="balance.low", data={"a": 1}, dedupe_key="same")
    assert not event_emit(user_id=user.pk, type="balance.low", data={"a": 1}, dedupe_key="same")
    assert WebhookDelivery.objects.count() == 1


def test_delivery_list_query_count_does_not_grow(owner, user):
    endpoint = endpoint_create(user=user, url="http://127.0.0.1:9/h").endpoint

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner.get(f"{URL}/{endpoint.pk}/deliveries").status_code == 200
        return len(ctx)

    for n in range(2):
        event_emit(user_id=user.pk, type="balance.low", data={}, dedupe_key=f"a{n}")
    few = count_queries()
    for n in range(10):
        event_emit(user_id=user.pk, type="balance.low", data={}, dedupe_key=f"b{n}")
    assert count_queries() == few


def test_portal_page_creates_an_endpoint_and_shows_the_secret_once(client, user, webhook_settings):
    client.force_login(user)
    response = client.post(
        "/settings/webhooks/",
        {"url": "http://127.0.0.1:9/portal", "event_types": ["pod.status_changed"]},
    )
    assert response.status_code == 200
    assert b"whsec_" in response.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["pod.status_changed"]
    again = client.get("/settings/webhooks/")
    assert b"whsec_" in again.content  # only the prefix…
    assert again.content.count(b"whsec_") == 1 and endpoint.secret_prefix.encode() in again.content
    bad = client.post("/settings/webhooks/", {"url": "not a url", "event_types": ["balance.low"]})
    assert bad.status_code == 400


def test_an_address_that_turned_private_is_not_called_and_retried_later(user, webhook_settings):
    from datetime import timedelta

    from django.utils import timezone

    from apps.webhooks.services import deliveries_due, delivery_attempt

    endpoint_create(user=user, url="http://127.0.0.1:9/h")
    event_emit(user_id=user.pk, type="balance.low", data={}, dedupe_key="k")
    delivery = WebhookDelivery.objects.get()
    webhook_settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    webhook_settings.WEBHOOK_RETRY_BASE_S = 600  # the retry is not due during the test

    delay = delivery_attempt(delivery_id=delivery.pk)

    assert delay == webhook_settings.WEBHOOK_RETRY_BASE_S
    attempt = delivery.log.get()
    assert attempt.status_code is None and "private, loopback or reserved" in attempt.error
    assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing sent
    assert deliveries_due() == []
    later = timezone.now() + timedelta(seconds=601)
    assert deliveries_due(now=later) == [delivery.pk]  # the sweep would queue it again


def test_deliveries_of_a_disabled_endpoint_are_dropped(user, webhook_settings):
    from apps.webhooks.models import DeliveryStatus
    from apps.webhooks.services import delivery_attempt, endpoint_disable

    endpoint = endpoint_create(user=user, url="http://127.0.0.1:9/h").endpoint
    event_emit(user_id=user.pk, type="balance.low", data={}, dedupe_key="k")
    endpoint_disable(endpoint=endpoint)

    assert delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk) is None
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and not delivery.log.exists()
