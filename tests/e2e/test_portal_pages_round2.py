"""Every provider-portal and catalog page, at desktop and phone width, in a real browser: no
console error, no CSP violation, nothing wider than the screen. The pages are filled with data
in the states they can show (a node with GPU telemetry and one still registering, payouts
requested / paid / rejected, deployments coming up, ready with traffic, stopped), and the
deploy dialog opens at both widths."""

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone
from playwright.sync_api import expect

from apps.catalog.models import Deployment, DeploymentStatus, ModelTemplate, ModelUsageLog
from apps.catalog.services.deploy import deployment_create
from apps.catalog.services.templates import templates_seed
from apps.nodes import services as node_services
from apps.nodes.models import Node, NodeStatus
from apps.providers.models import Payout, PayoutStatus
from apps.providers.services import payout_reject, payout_request, provider_register
from tests.e2e.portal_conftest import (
    DESKTOP,
    OPERATOR_PASSWORD,
    PHONE,
    admin_login,
    run_action,
    screenshot,
)
from tests.factories import earn, fund, make_node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "round2-pass-2026"


@pytest.fixture
def people(django_user_model, settings):
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = 10_000
    templates_seed()
    user = django_user_model.objects.create_user(email="both@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    newcomer = django_user_model.objects.create_user(email="new@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=newcomer, email=newcomer.email, primary=True, verified=True)
    fund(user, 100_000_000)
    operator = django_user_model.objects.create_superuser(
        email="ops@example.com", password=OPERATOR_PASSWORD
    )

    # The user is also a provider: a node with telemetry, one registering, payouts.
    provider = provider_register(
        owner=user,
        display_name="Both Ways Compute",
        payout_method="PAYPAL",
        payout_details={"email": "both@example.com"},
    ).provider
    node = make_node("rig-with-a-rather-long-hostname-01", gpus=2, provider_id=provider.pk)
    node_services.node_heartbeat(
        node=node,
        gpus=[
            {
                "index": 0,
                "utilization_pct": 91.5,
                "memory_used_mb": 20000,
                "temperature_c": 71,
                "power_w": 402.0,
            },
            {
                "index": 1,
                "utilization_pct": 3.0,
                "memory_used_mb": 400,
                "temperature_c": 35,
                "power_w": 60.0,
            },
        ],
        system={"cpu_percent": 12.5, "ram_used_mb": 30000, "ram_total_mb": 128000},
        containers=[],
    )
    make_node("rig-02", gpus=1, provider_id=provider.pk, online=False)
    Node.objects.filter(hostname="rig-02").update(status=NodeStatus.REGISTERING)
    earn(provider, 40_000_000)
    for amount, key in ((5_000_000, "a"), (7_000_000, "b")):
        payout_request(
            provider=provider,
            amount=amount,
            method="PAYPAL",
            details={"email": "both@example.com"},
            idempotency_key=key,
        )
    payout_reject(
        payout=Payout.objects.get(idempotency_key="b"), operator=operator, reason="test reject"
    )
    Payout.objects.filter(idempotency_key="a").update(status=PayoutStatus.PAID)

    # Deployments: one coming up (no node for its GPU), one ready with traffic, one stopped.
    make_node("cpu-host", gpus=0)
    echo = ModelTemplate.objects.get(slug="local-echo-test")
    llama = ModelTemplate.objects.get(slug="llama-3.1-8b-instruct")
    waiting = deployment_create(owner=user, template=llama, name="llama-waiting").deployment
    ready = deployment_create(owner=user, template=echo, name="echo-ready").deployment
    Deployment.objects.filter(pk=ready.pk).update(status=DeploymentStatus.READY)
    now = timezone.now()
    ModelUsageLog.objects.bulk_create(
        ModelUsageLog(
            deployment=ready,
            at=now - timedelta(minutes=m),
            endpoint="chat/completions",
            status_code=200 if m % 7 else 500,
            latency_ms=30.0 + m,
            first_byte_ms=5.0,
            prompt_tokens=12,
            completion_tokens=3 * m,
            streamed=True,
        )
        for m in range(1, 58, 2)
    )
    stopped = deployment_create(owner=user, template=echo, name="echo-stopped").deployment
    Deployment.objects.filter(pk=stopped.pk).update(status=DeploymentStatus.STOPPED)
    return {"waiting": waiting, "ready": ready, "stopped": stopped}


def log_in(page, live_server, email: str) -> None:
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")


def assert_clean(page, browser_guard, live_server, viewport, path: str) -> None:
    response = page.goto(live_server.url + path)
    assert response.status == 200, path
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{path} is {width}px wide"
    browser_guard.check()  # name the page that misbehaved


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_provider_and_catalog_page_is_clean(
    new_page, live_server, people, browser_guard, viewport
):
    suffix = "" if viewport is DESKTOP else "-phone"
    page = new_page(viewport=viewport)
    log_in(page, live_server, "both@example.com")
    paths = {
        "/dashboard/": "dashboard-deployments",
        "/models/": None,
        "/models/?category=llm": None,
        "/models/local-echo-test/deploy/": None,
        "/models/deployments/": "models-deployments",
        "/models/deployments/?scope=all": None,
        f"/models/deployments/{people['waiting'].pk}/": "models-deployment-loading",
        f"/models/deployments/{people['ready'].pk}/": "models-deployment-metrics",
        f"/models/deployments/{people['stopped'].pk}/": None,
        "/provider/": "provider-overview",
        "/provider/?period=week": None,
        "/provider/?period=month": None,
        "/provider/nodes/": "provider-nodes-telemetry",
        "/provider/payouts/": "provider-payout-history",
        "/provider/keys/": None,
    }
    for path, shot in paths.items():
        assert_clean(page, browser_guard, live_server, viewport, path)
        if shot:
            screenshot(page, shot + suffix)

    # The loading deployment shows its progress and keeps polling.
    page.goto(f"{live_server.url}/models/deployments/{people['waiting'].pk}/")
    expect(page.locator("#deployment-status progress")).to_be_visible()
    # The ready one draws its two charts.
    page.goto(f"{live_server.url}/models/deployments/{people['ready'].pk}/")
    expect(page.locator(".chart svg")).to_have_count(2)

    # The deploy dialog fits the screen.
    page.goto(live_server.url + "/models/?category=llm")
    page.locator("[data-slug=local-echo-test]").get_by_role("link", name="Deploy").click()
    dialog = page.locator("#dialog-local-echo-test")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    # A key created on the keys page: shown once with the installer, at this width too.
    page.goto(live_server.url + "/provider/keys/")
    page.fill("input[name=name]", "rack 2")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("install-command")).to_contain_text("GCO_PROVIDER_KEY")
    expect(page.get_by_test_id("provider-key")).to_contain_text("pk_")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"keys page with a new key is {width}px wide"
    browser_guard.check()

    # Someone who is not a provider yet gets the register page.
    other = new_page(viewport=viewport)
    log_in(other, live_server, "new@example.com")
    other.goto(live_server.url + "/provider/")
    other.wait_for_url("**/provider/register/")
    assert other.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    other.select_option("select[name=method]", "CRYPTO")
    other.fill("input[name=display_name]", "New Rigs")
    other.fill("input[name=address]", "0xnot-an-address")
    browser_guard.allow(r"status of 400")
    other.get_by_role("button", name="Register as a provider").click()
    expect(other.locator(".errorlist").first).to_be_visible()
    screenshot(other, "provider-register-errors" + suffix)


@pytest.fixture
def upstreams(settings):
    """Two configured upstream clouds (nothing is called: the page reads breaker state), one
    blocked; the process-wide breakers are cleared after."""
    from django.core.cache import cache

    from apps.sourcing import registry

    registry._breakers.clear()
    cache.clear()
    settings.SOURCING_PROVIDERS = {
        name: {"base_url": "http://127.0.0.1:9", "api_key": "test-key"}
        for name in ("runpod", "vast_ai")
    }
    registry.breaker_for("runpod").block("401 from the API: the key was revoked")
    yield
    registry._breakers.clear()
    cache.clear()


def test_operator_pages_for_providers_deployments_and_upstreams(
    page, live_server, people, upstreams, browser_guard
):
    admin_login(page, live_server)
    ready = people["ready"]
    for path, shot in {
        "/admin/": None,
        "/admin/providers/provider/": None,
        "/admin/providers/payout/": None,
        "/admin/providers/payoutapproval/": None,
        "/admin/catalog/deployment/": "admin-deployments",
        f"/admin/catalog/deployment/{ready.pk}/change/": None,
        "/admin/catalog/modeltemplate/": None,
        "/admin/upstream-health/": "admin-upstream-health",
        "/admin/sourcing/offerbookentry/": None,
    }.items():
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        browser_guard.check()
        if shot:
            screenshot(page, shot)

    # Reset the blocked upstream.
    page.goto(live_server.url + "/admin/upstream-health/")
    page.get_by_role("button", name="Reset").click()
    expect(page.get_by_text("runpod: reset; calls go through again.")).to_be_visible()
    expect(page.locator("#upstream-health")).not_to_contain_text("BLOCKED")

    # Stop a deployment from the list: through deployment_stop.
    page.goto(live_server.url + "/admin/catalog/deployment/")
    run_action(page, "Stop (its key stops working, its pods stop)", "echo-ready")
    expect(page.get_by_text("Stopped 1 deployment(s).")).to_be_visible()
    assert Deployment.objects.get(pk=ready.pk).status == DeploymentStatus.STOPPED
