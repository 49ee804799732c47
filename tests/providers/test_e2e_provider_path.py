"""The whole provider path with the API alone, multi-process: a user signs up and registers
as a provider → gets a `pk_…` key → a REAL agent process registers its machine with the key
(`--provider-key`, as the one-line installer configures it) → the provider prices the node →
another user's pod runs there (real Docker container) → billing ticks → the earnings show on
the provider's dashboard, exact to the micro-dollar → the provider asks for a PayPal payout →
an operator approves it in the admin's approval queue → the payout task sends it to (a local
fake of) PayPal → PayPal settles → the payout is PAID and the ledger balances."""

import signal

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import ledger_check, wallet_credit
from apps.nodes.models import Node, NodeStatus
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.providers.models import GpuPriceBand
from apps.providers.services import payouts_send_due, payouts_settle_due
from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - fixtures
from tests.e2e.conftest import cleanup_containers, start_agent  # noqa: F401 - fixtures
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PRICE = 36_000_000  # $36 an hour: 10,000 micro-dollars a second


def test_register_run_earn_and_get_paid(
    live_server,
    settings,
    start_agent,  # noqa: F811 - the fixture
    paypal,
    operator,
    django_user_model,
    busybox_image,  # noqa: F811
    cleanup_containers,  # noqa: F811
):
    settings.PAYOUT_MINIMUM_MICROS = 10_000  # one cent: a test earns cents
    server = live_server.url

    # 1. Sign up and become a provider; the answer carries the first pk_ key, shown once.
    signup = httpx.post(
        f"{server}/api/v1/auth/register",
        json={"email": "rigs@example.com", "password": "a-long-pass-phrase-42"},
    )
    assert signup.status_code == 201, signup.text
    provider_api = httpx.Client(
        base_url=server,
        headers={"Authorization": f"Bearer {signup.json()['access_token']}"},
        timeout=30,
    )
    registered = provider_api.post(
        "/api/v1/providers/register",
        json={
            "display_name": "Rigs",
            "payout_method": "PAYPAL",
            "payout_details": {"email": "rigs@example.com"},
        },
    )
    assert registered.status_code == 201, registered.text
    provider_id = registered.json()["provider"]["id"]
    key = registered.json()["key"]["key"]

    # 2. The real agent registers this machine with the key.
    agent = start_agent(key)
    node = wait_for(
        lambda: Node.objects.filter(provider_id=provider_id, status=NodeStatus.ONLINE).first(),
        "the provider's node ONLINE",
    )
    listed = provider_api.get("/api/v1/providers/nodes").json()
    assert [n["id"] for n in listed] == [str(node.pk)]

    # 3. The provider prices it (within the operator's band for CPU hosts).
    GpuPriceBand.objects.create(gpu_model="CPU", floor=10_000, ceiling=100_000_000)
    priced = provider_api.patch(
        f"/api/v1/providers/nodes/{node.pk}/pricing", json={"price_per_gpu_hour": PRICE}
    )
    assert priced.status_code == 200, priced.text

    # 4. A user with a balance runs a pod; it lands on the provider's node.
    renter = django_user_model.objects.create_user(
        email="renter@example.com", password="pw-1234567"
    )
    wallet_credit(
        user=renter, amount=50_000_000, reason="e2e", operator=operator, idempotency_key="e2e-fund"
    )
    renter_api = httpx.Client(base_url=server, timeout=30)
    token = renter_api.post(
        "/api/v1/auth/login", json={"email": "renter@example.com", "password": "pw-1234567"}
    ).json()["access_token"]
    renter_api.headers["Authorization"] = f"Bearer {token}"
    created = renter_api.post(
        "/api/v1/pods/",
        json={
            "name": "rented",
            "image": busybox_image,
            "command": ["sleep", "300"],
            "gpu_model": "CPU",
            "gpu_count": 0,
        },
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    wait_for(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING, node=node).exists(),
        "pod RUNNING on the provider's node",
    )
    assert Pod.objects.get(pk=pod_id).price_per_gpu_hour == PRICE

    # 5. Billing, after a later heartbeat; then the pod stops.
    def a_later_heartbeat() -> None:
        billed = Pod.objects.get(pk=pod_id).billed_until
        wait_for(
            lambda: (Node.objects.get(pk=node.pk).last_heartbeat_at - billed).total_seconds() >= 2,
            "a later heartbeat",
        )

    a_later_heartbeat()
    assert meter_tick(now=timezone.now()).records == 1
    a_later_heartbeat()
    assert renter_api.post(f"/api/v1/pods/{pod_id}/stop").status_code == 200
    wait_for(lambda: Pod.objects.get(pk=pod_id).status == PodStatus.STOPPED, "pod STOPPED")
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=60)

    # 6. Earnings: the Basic tier's 80% of every record, to the micro-dollar.
    records = list(UsageRecord.objects.filter(pod_id=pod_id))
    shares = sum(r.amount * 80 // 100 for r in records)
    assert [r.provider_share for r in records] == [r.amount * 80 // 100 for r in records]
    assert shares > 10_000
    dashboard = provider_api.get("/api/v1/providers/dashboard").json()
    assert dashboard["earnings"]["today"] == shares
    assert dashboard["balances"]["available"] == shares
    assert dashboard["nodes"][0]["earned_30d"] == shares

    # 7. A payout of every whole cent earned.
    cents = shares // 10_000
    amount_usd = f"{cents // 100}.{cents % 100:02d}"
    requested = provider_api.post(
        "/api/v1/providers/payouts/request",
        json={"amount_usd": amount_usd},
        headers={"Idempotency-Key": "first-payout"},
    )
    assert requested.status_code == 201, requested.text
    payout_id = requested.json()["id"]

    # 8. The operator approves it from the admin's approval queue.
    admin = Client()
    admin.force_login(operator)
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    queue = admin.get("/admin/providers/payoutapproval/")
    assert queue.status_code == 200 and payout_id in queue.content.decode()
    approved = admin.post(
        "/admin/providers/payoutapproval/",
        {"action": "approve", "_selected_action": [payout_id]},
    )
    assert approved.status_code == 302
    # 9. The periodic tasks send it to PayPal and, once PayPal settles it, mark it paid.
    assert payouts_send_due() == 1
    batch = paypal.batch_for(payout_id)
    assert batch["items"][0]["payout_item"]["amount"]["value"] == amount_usd
    paypal.settle(batch["batch_header"]["payout_batch_id"], "SUCCESS")
    assert payouts_settle_due() == 1

    payouts = provider_api.get("/api/v1/providers/payouts").json()
    assert [(p["id"], p["status"]) for p in payouts] == [(payout_id, "PAID")]
    balances = provider_api.get("/api/v1/providers/dashboard").json()["balances"]
    assert balances["paid"] == cents * 10_000
    assert balances["available"] == shares - cents * 10_000
    payable = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider_id)
    assert payable.balance == shares - cents * 10_000
    assert LedgerAccount.objects.get(kind=AccountKind.PAYOUTS_CLEARING).balance == 0
    assert ledger_check() == []
