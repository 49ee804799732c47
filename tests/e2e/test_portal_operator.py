"""The operator's back office in a real browser (the Django admin): drain and retire a node,
force-stop a pod, credit a wallet with a reason (one ledger transaction, applied once), and
the ledger is read-only. Every action goes through the apps' services. No console error and no
CSP violation on any admin page visited."""

import pytest
from playwright.sync_api import expect

from apps.billing.models import LedgerAccount, Transaction, TransactionKind
from apps.billing.selectors import wallet_balance
from apps.nodes.models import Node, NodeStatus
from apps.pods import services as pod_services
from apps.pods.models import PodStatus
from tests.e2e.portal_conftest import OPERATOR_PASSWORD, admin_login, run_action, screenshot
from tests.factories import fund, make_node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(
        email="ops@example.com", password=OPERATOR_PASSWORD
    )


def test_operator_drains_retires_force_stops_and_credits(page, live_server, operator, user):
    # Given a customer running a pod on a node.
    fund(user, 10_000_000)
    node = make_node("gpu-host-1", gpus=2, price=690_000)
    pod = pod_services.pod_create(
        owner=user,
        spec={
            "name": "stuck-pod",
            "image": "local/busybox:1",
            "gpu_model": "RTX 4090",
            "gpu_count": 1,
        },
    ).pod
    assert pod.status == PodStatus.SCHEDULED

    admin_login(page, live_server)
    expect(page.get_by_test_id("nodes-online")).to_have_text("1")
    page.locator("#back-office-summary .chart svg").wait_for()  # drawn by portal.js
    screenshot(page, "admin-index")

    # Drain the node, then retire it.
    page.goto(live_server.url + "/admin/nodes/node/")
    run_action(page, "Drain (take no new pods)", "gpu-host-1")
    expect(page.locator(".messagelist")).to_contain_text("Drained 1 node(s)")
    assert Node.objects.get(pk=node.pk).status == NodeStatus.DRAINING
    screenshot(page, "admin-nodes")

    # Force-stop the customer's pod.
    page.goto(live_server.url + "/admin/pods/pod/")
    run_action(page, "Force stop (bill to now, remove the container)", "stuck-pod")
    expect(page.locator(".messagelist")).to_contain_text("Stopping 1 pod(s)")
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING
    assert "force-stopped by operator ops@example.com" in pod.status_reason

    page.goto(live_server.url + f"/admin/nodes/node/{node.pk}/change/")
    expect(page.locator(".field-telemetry")).to_contain_text("RTX 4090")
    screenshot(page, "admin-node")

    page.goto(live_server.url + "/admin/nodes/node/")
    run_action(page, "Retire (revoke token, never schedule again)", "gpu-host-1")
    expect(page.locator(".messagelist")).to_contain_text("Retired 1 node(s)")
    assert Node.objects.get(pk=node.pk).status == NodeStatus.RETIRED

    # Credit the customer's wallet with a reason, from the ledger's account list.
    page.goto(live_server.url + "/admin/billing/ledgeraccount/")
    page.locator("tr", has_text=f"wallet of {user.email}").get_by_role(
        "link", name="Credit…"
    ).click()
    page.fill("input[name=amount_usd]", "5.00")
    page.fill("textarea[name=reason]", "GPU host went away mid-run")
    screenshot(page, "admin-credit")
    # The same form sent twice (a first click whose answer was lost, then a second click):
    # its one-time key makes the second a no-op.
    first = page.evaluate(
        """async () => {
            const form = document.querySelector("#content form");
            const response = await fetch(form.action, {method: "POST", body: new FormData(form)});
            return response.status;
        }"""
    )
    assert first == 200
    page.get_by_role("button", name="Credit wallet").click()
    expect(page.locator(".messagelist")).to_contain_text("Already applied: Credit from ops@")
    credit = Transaction.objects.get(kind=TransactionKind.CREDIT)
    assert credit.created_by == operator and credit.reason == "GPU host went away mid-run"
    assert wallet_balance(user) == 15_000_000  # the force-stopped pod never ran: no charge

    # A refund from the customer's own admin page, which shows the wallet.
    page.goto(live_server.url + f"/admin/accounts/user/{user.pk}/change/")
    expect(page.locator(".field-wallet")).to_contain_text("$15.00")
    page.locator(".field-wallet").get_by_role("link", name="Refund…").click()
    page.fill("input[name=amount_usd]", "1.00")
    page.fill("textarea[name=reason]", "Customer asked for part of the credit back")
    page.get_by_role("button", name="Refund wallet").click()
    expect(page.locator(".messagelist")).to_contain_text("Applied: Refund by ops@example.com")
    assert wallet_balance(user) == 14_000_000

    # The ledger is read-only: no add, no save, no delete.
    page.goto(live_server.url + f"/admin/billing/transaction/{credit.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    page.goto(live_server.url + "/admin/billing/ledgeraccount/")
    assert page.get_by_role("link", name="Add ledger account").count() == 0
    assert LedgerAccount.objects.filter(user=user).count() == 1
    screenshot(page, "admin-ledger")
