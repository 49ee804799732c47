"""The provider portal in a real browser: a user signs up, registers as a provider, gets the
install one-liner with a `pk_…` key shown once, a REAL agent process registers its machine with
that key (`--provider-key`, what the one-liner configures) and the node appears on the nodes
page by itself; the provider prices it (the operator's band enforced, the error shown), sees
the earnings chart, requests a PayPal payout; an operator approves it in the admin's approval
queue, the payout task sends it to (a local fake of) PayPal, it settles, and the provider sees
it PAID. No console error and no CSP violation on any page."""

import re

import pytest
from playwright.sync_api import expect

from apps.nodes.models import Node, NodeStatus
from apps.providers.models import GpuPriceBand, Payout, PayoutStatus, Provider
from apps.providers.services import payouts_send_due, payouts_settle_due
from tests.e2e.portal_conftest import screenshot
from tests.e2e.test_portal_auth import sign_up
from tests.e2e.test_portal_operator import OPERATOR_PASSWORD, admin_login, run_action
from tests.providers.conftest import earn, paypal  # noqa: F401 - fixture
from tests.providers.test_e2e_provider_path import start_agent  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def tab(page, name: str):
    return page.get_by_role("navigation", name="Provider portal").get_by_role("link", name=name)


def test_provider_registers_sees_its_node_gets_paid(
    new_page,
    browser_guard,
    live_server,
    settings,
    start_agent,
    paypal,
    django_user_model,  # noqa: F811
):
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = 10_000
    page = new_page()
    sign_up(page, live_server, "rigs@example.com")

    # Register: the first key is shown once, inside the install one-liner.
    page.get_by_role("link", name="Provider").click()
    page.wait_for_url("**/provider/register/")
    screenshot(page, "provider-register")
    page.fill("input[name=display_name]", "Rigs & Co")
    page.select_option("select[name=method]", "PAYPAL")
    page.fill("input[name=paypal_email]", "rigs@example.com")
    page.get_by_role("button", name="Register as a provider").click()
    key = page.get_by_test_id("provider-key").inner_text()
    assert re.fullmatch(r"pk_\S+", key)
    expect(page.get_by_test_id("install-command")).to_contain_text(
        f"/api/v1/nodes/install.sh | sudo bash -s -- --provider-key={key}"
    )
    screenshot(page, "provider-install")

    # The nodes page waits for the first machine; a real agent registers with the key.
    tab(page, "Nodes").click()
    expect(page.get_by_text("Waiting for your first machine")).to_be_visible()
    start_agent(key)
    provider = Provider.objects.get(owner__email="rigs@example.com")
    node_card = page.get_by_test_id("node")
    expect(node_card.get_by_test_id("node-status")).to_have_text("ONLINE", timeout=60_000)
    node = Node.objects.get(provider_id=provider.pk)
    assert node.status == NodeStatus.ONLINE
    expect(node_card).to_contain_text(node.hostname)
    expect(node_card).to_contain_text("Last heartbeat")

    # Pricing: outside the operator's band is refused with the reason; inside is saved.
    GpuPriceBand.objects.create(gpu_model="CPU", floor=10_000, ceiling=2_000_000)
    page.reload()
    # The refusal is a 400 page (the browser logs its status): expected here.
    browser_guard.allow(r"status of 400")
    page.fill("input[name=price_usd]", "5")
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_test_id("price-error")).to_contain_text("between 10000 and 2000000")
    screenshot(page, "provider-nodes-price-error")
    page.fill("input[name=price_usd]", "0.45")
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_text("$0.4500/GPU-h")).to_be_visible()
    assert Node.objects.get(pk=node.pk).price_per_gpu_hour == 450_000
    screenshot(page, "provider-nodes")

    # Earnings (what metering credits to the provider's payable), charted.
    earn(provider, 2_500_000)
    tab(page, "Earnings").click()
    expect(page.get_by_test_id("available")).to_have_text("$2.50")
    page.locator(".chart svg").wait_for()
    screenshot(page, "provider-earnings")

    # A payout request (the method and email come from the profile).
    tab(page, "Payouts").click()
    page.fill("input[name=amount_usd]", "2.00")
    page.get_by_role("button", name="Request payout").click()
    expect(page.get_by_test_id("payout-status")).to_have_text("REQUESTED")
    expect(page.get_by_test_id("available")).to_have_text("$0.50")
    payout = Payout.objects.get(provider=provider)
    assert payout.amount == 2_000_000 and payout.details == {"email": "rigs@example.com"}
    screenshot(page, "provider-payouts")

    # The operator approves it in the admin's approval queue.
    django_user_model.objects.create_superuser(email="ops@example.com", password=OPERATOR_PASSWORD)
    admin = new_page()
    admin_login(admin, live_server)
    admin.goto(live_server.url + "/admin/providers/payoutapproval/")
    expect(admin.locator("#result_list")).to_contain_text("Rigs & Co")
    screenshot(admin, "admin-payout-queue")
    run_action(admin, "Approve selected payouts", "Rigs")
    expect(admin.get_by_text("Approved 1 payout(s)")).to_be_visible()
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.APPROVED

    # The periodic tasks send it to PayPal; PayPal settles it; the provider sees it paid.
    assert payouts_send_due() == 1
    batch = paypal.batch_for(str(payout.pk))
    paypal.settle(batch["batch_header"]["payout_batch_id"], "SUCCESS")
    assert payouts_settle_due() == 1
    page.reload()
    expect(page.get_by_test_id("payout-status")).to_have_text("PAID")
