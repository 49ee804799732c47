"""The model catalog in a real browser: deploy the deterministic `local-echo-test` model from
its card's dialog, a REAL agent runs its replica as a Docker container (as in
test_deployment_flow.py), the deployment page shows the key once and its progress until READY
(polled), and the chat playground streams the answer from our own /v1/chat/completions (plain
`fetch`, the SSE body read incrementally). No console error and no CSP violation.

The pages are served by the ASGI app (uvicorn in this process, as production serves it): the
proxy's streamed answers are relayed chunk by chunk there, while the WSGI live server would
buffer them. The agent talks to the live server; both use the same test database."""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.db import connection
from playwright.sync_api import expect

from apps.catalog.models import Deployment, DeploymentStatus
from apps.catalog.services import health, provisioning
from apps.catalog.services.templates import templates_seed
from tests.e2e.portal_conftest import screenshot
from tests.factories import fund
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PASSWORD = "models-pass-2026"


@pytest.fixture
def customer(django_user_model):
    user = django_user_model.objects.create_user(email="models@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    fund(user, 100_000_000)
    return user


def test_deploy_from_the_catalog_and_chat_in_the_playground(
    page,
    browser_guard,
    proxy_server,  # noqa: F811
    local_agent,  # noqa: F811
    cleanup_containers,
    customer,
    settings,
):
    port = free_port()
    settings.CATALOG_HOST_PORT_RANGE = (port, port)
    templates_seed()
    local_agent(Path(sys.prefix))  # the echo backend needs only the core venv
    site = proxy_server.url

    page.goto(site + "/accounts/login/")
    page.fill("input[name=login]", customer.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")

    # The catalog: cards by category; the card's Deploy opens the dialog.
    page.get_by_role("link", name="Models").first.click()
    card = page.locator("[data-testid=model-card][data-slug=local-echo-test]")
    screenshot(page, "models-catalog")
    card.get_by_role("link", name="Deploy").click()
    dialog = page.locator("#dialog-local-echo-test")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=replicas]").fill("1")
    dialog.locator("input[name=name]").fill("echo-from-browser")
    screenshot(page, "models-deploy-dialog", full_page=False)
    dialog.get_by_role("button", name="Deploy").click()

    # The deployment page: the key this once, progress while it comes up.
    key = page.get_by_test_id("deployment-key").inner_text()
    assert key.startswith("sk_")
    deployment = Deployment.objects.get(owner=customer)
    assert deployment.name == "echo-from-browser"
    assert page.get_by_test_id("deployment-status").inner_text() != "READY"

    def beat() -> None:
        try:
            provisioning.deployments_sync_status()
            health.replicas_health_check()
        finally:
            connection.close()

    def ready() -> bool:
        # What beat runs every 15-30 s, run as often as the test polls; in a thread of its
        # own, since the health check runs its own event loop and Playwright's runs here.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(beat).result()
        return Deployment.objects.get(pk=deployment.pk).status == DeploymentStatus.READY

    wait_for(ready, "local-echo-test READY", timeout=120)
    expect(page.get_by_test_id("deployment-status")).to_have_text("READY", timeout=30_000)

    # The playground (the key was filled in): the answer streams in word by word.
    page.fill("#playground-prompt", "hello from a real browser tab")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".chat-log .chat-assistant")
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    expect(answer.locator(".chat-text")).to_have_text("echo: hello from a real browser tab")
    assert int(answer.get_attribute("data-chunks")) > 1  # several SSE events, appended as read
    screenshot(page, "models-deployment")

    # A second turn carries the conversation; a wrong key is an error shown in the log.
    page.fill("#playground-prompt", "again")
    page.get_by_role("button", name="Send").click()
    expect(answer.nth(1)).to_have_attribute("data-state", "done")
    expect(answer.nth(1).locator(".chat-text")).to_have_text("echo: again")
    browser_guard.allow(r"status of 401")  # the browser logs the refused request itself
    page.fill("#playground-key", "sk_not_a_key")
    page.fill("#playground-prompt", "who am I")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".chat-log .chat-error")).to_contain_text("key")

    # The dashboard lists the deployment.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("dashboard-deployments")).to_contain_text("echo-from-browser")
