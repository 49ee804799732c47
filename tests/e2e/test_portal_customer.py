"""The customer's whole path in a real browser against the real server and a real agent:
sign up (email verified through the mailed link) → top up through Stripe Checkout (the fake
Stripe API; the payment confirmed by a signed webhook) → start a pod from the form with its
live price → watch it reach RUNNING → read its logs → stop it → see the charge on the
dashboard, the usage and the transactions pages. Any console error or CSP violation on any of
these pages fails the test (tests/e2e/portal_conftest.py)."""

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus, UsageRecord
from tests.e2e.portal_conftest import PHONE, screenshot, sign_up
from tests.fakes.stripe_server import running_stripe, sign_payload
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_portal_e2e_0123456789abcdef"
PRICE = 360_000  # $0.36 an hour


@pytest.fixture
def stripe_fake(settings, live_server):
    with running_stripe() as fake:
        settings.STRIPE_SECRET_KEY = fake.api_key
        settings.STRIPE_API_BASE = fake.base_url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_CHECKOUT_SUCCESS_URL = (
            live_server.url + "/billing/topup/done?session_id={CHECKOUT_SESSION_ID}"
        )
        settings.STRIPE_CHECKOUT_CANCEL_URL = live_server.url + "/billing/topup/?cancelled=1"
        yield fake


def serve_fake_checkout_page(page, fake) -> None:
    """Stripe's hosted page is on the internet: the browser gets a stand-in with a link back to
    the session's success URL, as Stripe redirects after payment."""

    def fulfill(route):
        session_id = re.search(r"/c/pay/([^#/?]+)", route.request.url).group(1)
        back = fake.sessions[session_id]["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
        route.fulfill(
            status=200,
            content_type="text/html",
            body=(
                "<!doctype html><title>Stripe Checkout</title><h1>Pay</h1>"
                f'<a href="{back}">Back to the merchant</a>'
            ),
        )

    page.route("https://checkout.stripe.com/**", fulfill)


def test_signup_topup_run_a_pod_stop_and_see_the_charge(
    page, new_page, live_server, stripe_fake, agent_env, busybox_image, cleanup_containers
):
    # Given a GPU host running our agent (this machine: a CPU-only node) at $0.36/h.
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    Node.objects.filter(pk=node.pk).update(price_per_gpu_hour=PRICE)

    # Sign up and verify the address.
    sign_up(page, live_server, "customer@example.com")
    assert page.get_by_test_id("balance").inner_text() == "$0.00"

    # Top up $25: the form opens Stripe Checkout, the customer pays and comes back.
    serve_fake_checkout_page(page, stripe_fake)
    page.get_by_role("link", name="Top up", exact=True).first.click()
    screenshot(page, "topup")
    page.fill("input[name=amount_usd]", "25")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url("https://checkout.stripe.com/**")
    (session_id,) = stripe_fake.sessions
    page.get_by_role("link", name="Back to the merchant").click()
    page.wait_for_url("**/billing/topup/done?session_id=*")
    assert page.get_by_text("Waiting for Stripe to confirm").is_visible()

    # Stripe confirms with a signed webhook; the page sees the credit by itself.
    event = json.dumps(stripe_fake.complete_session(session_id))
    delivered = httpx.post(
        live_server.url + "/webhooks/stripe",
        content=event,
        headers={
            "Stripe-Signature": sign_payload(event, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert delivered.status_code == 200, delivered.text
    page.get_by_test_id("topup-credited").wait_for()
    assert page.get_by_test_id("balance").inner_text() == "$25.00"

    # Start a pod: the form shows the node's live price for the chosen model and count.
    page.get_by_role("link", name="Pods", exact=True).click()
    page.get_by_role("link", name="Start a pod").first.click()
    page.select_option("select[name=gpu_model]", "CPU")
    expect(page.get_by_test_id("price")).to_have_text(re.compile(r"^\$0\.36/h \(CPU only\)"))
    page.fill("input[name=name]", "hello-pod")
    page.fill("input[name=image]", busybox_image)
    page.fill("input[name=command]", "sh -c 'echo hello from the pod; sleep 300'")
    screenshot(page, "pod-create")
    page.get_by_role("button", name="Start pod").click()
    page.wait_for_url(re.compile(r".*/pods/[0-9a-f-]{36}/$"))
    pod = Pod.objects.get(name="hello-pod")

    # Watch it reach RUNNING without reloading (the status fragment is polled).
    status = page.locator("#pod-status [data-testid=pod-status]")
    status.filter(has_text="RUNNING").wait_for(timeout=60_000)
    assert page.locator("#pod-status progress").count() == 0
    assert node.hostname in page.get_by_test_id("connection").inner_text()
    screenshot(page, "pod-running")

    # Its logs come from the node on its next heartbeat.
    page.get_by_role("button", name="Fetch the last lines").click()
    page.get_by_test_id("logs").wait_for()
    assert "hello from the pod" in page.get_by_test_id("logs").inner_text()
    screenshot(page, "pod-logs")

    # Let it be billed a few seconds (billing follows the node's heartbeats), then stop it.
    started = Pod.objects.get(pk=pod.pk).started_at
    wait_for(
        lambda: (Node.objects.get(pk=node.pk).last_heartbeat_at - started).total_seconds() >= 2,
        "two seconds of heartbeats",
    )
    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    page.get_by_role("button", name="Stop pod").click()
    status = page.locator("#pod-status [data-testid=pod-status]")
    status.filter(has_text="STOPPED").wait_for(timeout=60_000)
    assert Pod.objects.get(pk=pod.pk).status == PodStatus.STOPPED

    # The charge: usage records, a lower balance, this month's spend.
    charged = sum(r.amount for r in UsageRecord.objects.filter(pod=pod))
    assert charged > 0
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_test_id("usage-amount").first).to_be_visible()
    screenshot(page, "usage")
    page.get_by_role("link", name="Transactions", exact=True).click()
    page.select_option("select[name=kind]", "USAGE")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/transactions/?*kind=USAGE*")
    expect(page.locator("tr[data-kind=USAGE]").first).to_be_visible()
    expect(page.locator("tr[data-kind=TOPUP]")).to_have_count(0)
    screenshot(page, "transactions")
    page.get_by_role("link", name="Dashboard", exact=True).click()
    balance = 25_000_000 - charged
    expect(page.get_by_test_id("balance")).to_have_text(f"${balance / 1e6:.2f}")
    page.locator(".chart svg").wait_for()  # drawn by portal.js from the page's data
    assert page.locator(".chart svg rect.bar").count() >= 1
    assert page.get_by_test_id("month-spent").inner_text() != "$0.00"
    screenshot(page, "dashboard")

    # A monthly cap, set from the dashboard.
    page.get_by_role("link", name="Spend limits").click()
    page.fill("input[name=monthly_cap_usd]", "100")
    page.get_by_role("button", name="Save limits").click()
    expect(page.locator(".messages")).to_contain_text("Spend limits saved.")
    assert page.locator("input[name=monthly_cap_usd]").input_value() == "100.00"

    # An API key, shown once.
    page.get_by_role("link", name="API keys").click()
    page.fill("input[name=name]", "laptop")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#new-api-key").inner_text()
    assert raw.startswith("gco_")
    screenshot(page, "api-keys")
    api = httpx.get(
        live_server.url + "/api/v1/users/balance", headers={"Authorization": f"Bearer {raw}"}
    )
    assert api.json()["balance_micros"] == balance

    # The same pages on a phone: nothing wider than the screen.
    phone = new_page(viewport=PHONE)
    phone.context.add_cookies(page.context.cookies())
    for path in ("/dashboard/", "/pods/", f"/pods/{pod.pk}/", "/pods/new/", "/billing/usage/"):
        phone.goto(live_server.url + path)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
    phone.goto(live_server.url + "/dashboard/")
    screenshot(phone, "dashboard-phone")
    agent.stop()
