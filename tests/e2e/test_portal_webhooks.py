"""The webhooks and security pages in a real browser: add an endpoint, see its secret once,
read the delivery log; a scoped API key with an expiry; the pages fit a phone. No console
error, no CSP violation."""

import pytest
from allauth.account.models import EmailAddress

from apps.accounts.models import ApiKey
from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.services import event_emit
from tests.e2e.portal_conftest import DESKTOP, PHONE, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "hooks-pass-12345"


@pytest.fixture
def customer(django_user_model, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    user = django_user_model.objects.create_user(email="hooks@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    return user


def log_in(page, live_server) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", "hooks@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")


def test_add_an_endpoint_and_read_its_log(page, live_server, customer):
    log_in(page, live_server)
    page.get_by_role("link", name="Webhooks").click()
    page.fill("input[name=url]", "http://127.0.0.1:9/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    screenshot(page, "webhooks")
    page.goto(live_server.url + "/settings/webhooks/")
    assert page.get_by_test_id("new-webhook-secret").count() == 0  # shown once

    endpoint = WebhookEndpoint.objects.get()
    event_emit(user_id=customer.pk, type="balance.low", data={"status": "low"}, dedupe_key="e1")
    page.get_by_role("link", name="http://127.0.0.1:9/hooks").click()
    page.get_by_test_id("deliveries").get_by_text("balance.low").wait_for()
    assert endpoint.deliveries.count() == 1


def test_create_a_scoped_expiring_key(page, live_server, customer):
    log_in(page, live_server)
    page.get_by_role("link", name="API keys").click()
    page.fill("input[name=name]", "read-only")
    scopes = page.get_by_test_id("key-scopes")
    for label in ("Pods, volumes, nodes", "Model deployments", "Billing and payouts"):
        scopes.get_by_label(label).uncheck()
    page.fill("input[name=expires_at]", "2099-06-30T12:00")
    page.get_by_role("button", name="Create key").click()
    page.get_by_test_id("new-key").wait_for()
    key = ApiKey.objects.get(user=customer)
    assert key.scopes == ["read"] and key.expires_at is not None


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_pages_are_clean(new_page, live_server, customer, browser_guard, viewport):
    page = new_page(viewport=viewport)
    log_in(page, live_server)
    for path in ("/settings/webhooks/", "/accounts/2fa/", "/api-keys/"):
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("load")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{path} is {width}px wide"
        browser_guard.check()
