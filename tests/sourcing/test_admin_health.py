"""The admin's upstream health page: each configured cloud's breaker state, launches and
offers; a superuser resets a blocked provider through `registry.breaker_reset`; staff only."""

import pytest
from django.test import Client

from apps.sourcing import registry
from apps.sourcing.models import LaunchStat

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(django_user_model):
    operator = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    client = Client()
    client.force_login(operator)
    return client


def test_health_page_shows_breakers_and_resets_a_blocked_provider(operator_client, sourcing):
    LaunchStat.objects.create(provider="runpod", gpu_model="H100 SXM", attempts=4, successes=3)
    registry.breaker_for("runpod").block("401 from the API: bad key")

    page = operator_client.get("/admin/upstream-health/")

    html = page.content.decode()
    assert page.status_code == 200
    for name in registry.configured_providers():
        assert f"<td>{name}</td>" in html
    assert "BLOCKED" in html and "401 from the API: bad key" in html and "3 / 4" in html

    reset = operator_client.post("/admin/upstream-health/runpod/reset")

    assert reset.status_code == 302
    assert registry.breaker_for("runpod").state == "CLOSED"
    assert operator_client.post("/admin/upstream-health/nowhere/reset").status_code == 404


def test_health_page_is_for_staff_only(client, user, sourcing):
    client.force_login(user)
    assert client.get("/admin/upstream-health/").status_code == 302  # the admin's login
    assert client.post("/admin/upstream-health/runpod/reset").status_code == 302
    assert registry.breaker_for("runpod").state == "CLOSED"
