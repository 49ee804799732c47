"""The provider portal in a real browser: a user signs up, registers as a provider, gets the
install one-liner with a `pk_…` key shown once, a REAL agent process registers its machine with
that key (`--provider-key`, what the one-liner configures) and the node appears on the nodes
page by itself; the provider prices it (the operator's band enforced, the error shown); a
customer's pod runs on the node (a real container) and is billed; the provider sees the
earnings on the chart and requests a PayPal payout; an operator approves it in the admin's approval
queue, the payout task sends it to (a local fake of) PayPal, it settles, and the provider sees
it PAID. No console error and no CSP violation on any page."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.core.money import micros_to_usd
from apps.nodes.models import Node, NodeStatus
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.pods.services import pod_create, pod_stop
from apps.providers.models import GpuPriceBand, Payout, PayoutStatus, Provider
from apps.providers.services import payouts_send_due, payouts_settle_due
from tests.e2e.portal_conftest import (
    OPERATOR_PASSWORD,
    admin_login,
    run_action,
    screenshot,
    sign_up,
)
from tests.factories import fund
from tests.providers.conftest import paypal  # noqa: F401 - fixture
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PRICE = 36_000_000  # micro-dollars per GPU-hour


def tab(page, name: str):
    return page.get_by_role("navigation", name="Provider portal").get_by_role("link", name=name)


def test_provider_registers_sees_its_node_gets_paid(
    new_page,
    browser_guard,
    live_server,
    settings,
    start_agent,  # noqa: F811
    paypal,  # noqa: F811
    django_user_model,
    busybox_image,
    cleanup_containers,
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
    # The one-liner reads the key at a prompt: it never stands on a command line.
    install = page.get_by_test_id("install-command")
    expect(install).to_contain_text("GCO_PROVIDER_KEY")
    expect(install).to_contain_text("/api/v1/nodes/install.sh | sudo -E bash")
    expect(install).not_to_contain_text(key)
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
    GpuPriceBand.objects.create(gpu_model="CPU", floor=10_000, ceiling=100_000_000)
    page.reload()
    # The refusal is a 400 page (the browser logs its status): expected here.
    browser_guard.allow(r"status of 400")
    page.fill("input[name=price_usd]", "500")
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_test_id("price-error")).to_contain_text("between 10000 and 100000000")
    screenshot(page, "provider-nodes-price-error")
    page.fill("input[name=price_usd]", "36")  # $36 an hour: a cent in a second
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_text("$36.0000/GPU-h")).to_be_visible()
    assert Node.objects.get(pk=node.pk).price_per_gpu_hour == PRICE
    screenshot(page, "provider-nodes")

    # A customer's pod runs on the node (a real container) and is billed: the provider earns
    # its tier's share of every usage record.
    renter = django_user_model.objects.create_user(email="renter@example.com", password="pw-1")
    fund(renter, 50_000_000)
    spec = {"name": "rented", "image": busybox_image, "command": ["sleep", "300"]}
    pod = pod_create(owner=renter, spec={**spec, "gpu_model": "CPU", "gpu_count": 0}).pod
    wait_for(
        lambda: Pod.objects.filter(pk=pod.pk, status=PodStatus.RUNNING, node=node).exists(),
        "the renter's pod RUNNING on the provider's node",
    )
    billed = Pod.objects.get(pk=pod.pk).billed_until
    wait_for(
        lambda: (Node.objects.get(pk=node.pk).last_heartbeat_at - billed).total_seconds() >= 3,
        "a later heartbeat",
    )
    assert meter_tick(now=timezone.now()).records == 1
    pod_stop(pod=Pod.objects.get(pk=pod.pk))
    wait_for(lambda: Pod.objects.get(pk=pod.pk).status == PodStatus.STOPPED, "pod STOPPED")
    earned = sum(r.provider_share for r in UsageRecord.objects.filter(pod_id=pod.pk))
    assert earned >= 20_000

    # The earnings, charted.
    tab(page, "Earnings").click()
    expect(page.get_by_test_id("earned-today")).to_have_text(f"${micros_to_usd(earned, 4)}")
    expect(page.get_by_test_id("available")).to_have_text(f"${micros_to_usd(earned)}")
    page.locator(".chart svg").wait_for()
    screenshot(page, "provider-earnings")

    # A payout of every whole cent but one (the method and email come from the profile).
    amount = (earned // 10_000 - 1) * 10_000
    tab(page, "Payouts").click()
    page.fill("input[name=amount_usd]", micros_to_usd(amount))
    page.get_by_role("button", name="Request payout").click()
    expect(page.get_by_test_id("payout-status")).to_have_text("REQUESTED")
    expect(page.get_by_test_id("available")).to_have_text(f"${micros_to_usd(earned - amount)}")
    payout = Payout.objects.get(provider=provider)
    assert payout.amount == amount and payout.details == {"email": "rigs@example.com"}
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
