"""Money end to end: a signed Stripe webhook tops up the wallet → the user starts a pod over
the API → a real agent runs its container → two billing ticks → stop → the balance, the usage
records and the provider's share are exact to the micro-dollar."""

import json
import signal
import uuid
from datetime import timedelta

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.services import api_key_create
from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction
from apps.nodes.models import Node, NodeStatus
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from tests.fakes.stripe_server import checkout_event, sign_payload
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_e2e_0123456789abcdefghij"
PRICE = 360_000  # $0.36 an hour: exactly 100 micro-dollars a second


def test_topup_run_bill_stop_is_exact(
    agent_env, live_server, settings, user, docker_client, busybox_image, cleanup_containers
):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    server = live_server.url
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    provider_id = uuid.uuid4()  # a community host's node (the providers app binds it later)
    Node.objects.filter(pk=node.pk).update(provider_id=provider_id, price_per_gpu_hour=PRICE)

    # Top up $25 through a signed webhook, delivered twice as Stripe may.
    event = checkout_event(
        {
            "id": f"cs_test_{uuid.uuid4().hex}",
            "object": "checkout.session",
            "amount_total": 2500,
            "amount_subtotal": 2500,
            "currency": "usd",
            "client_reference_id": str(user.pk),
            "metadata": {"user_id": str(user.pk), "amount_micros": "25000000"},
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
        }
    )
    raw = json.dumps(event)
    for _ in range(2):
        response = httpx.post(
            f"{server}/webhooks/stripe",
            content=raw,
            headers={
                "Stripe-Signature": sign_payload(raw, WEBHOOK_SECRET),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200, response.text
    key = api_key_create(user=user, name="e2e").raw_key
    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert api.get("/api/v1/users/balance").json()["balance_micros"] == 25_000_000

    created = api.post(
        "/api/v1/pods/",
        json={
            "name": "billing-e2e",
            "image": busybox_image,
            "command": ["sleep", "300"],
            "gpu_model": "CPU",
            "gpu_count": 0,
        },
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    pod = wait_for(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).first(), "pod RUNNING"
    )

    def wait_for_a_later_heartbeat() -> None:
        billed = Pod.objects.get(pk=pod_id).billed_until
        wait_for(
            lambda: (Node.objects.get(pk=node.pk).last_heartbeat_at - billed).total_seconds() >= 2,
            "a later heartbeat",
        )

    # Two ticks, each after the agent has heartbeated again (billing follows the heartbeats).
    for _ in range(2):
        wait_for_a_later_heartbeat()
        assert meter_tick(now=timezone.now()).records == 1

    wait_for_a_later_heartbeat()
    stopped = api.post(f"/api/v1/pods/{pod_id}/stop")
    assert stopped.json()["status"] == "STOPPING"
    wait_for(lambda: Pod.objects.get(pk=pod_id).status == PodStatus.STOPPED, "pod STOPPED")
    assert meter_tick(now=timezone.now()).records == 0  # nothing after the stop
    agent.stop(signal.SIGTERM)

    records = list(UsageRecord.objects.filter(pod_id=pod_id).order_by("period_start"))
    # Two ticks, then the stop: it bills up to the node's last heartbeat at once, and the
    # whole seconds between that heartbeat and the stop request when the agent confirms the
    # container is gone (none when the heartbeat came less than a second before the stop).
    assert len(records) in (3, 4), records
    ended = Pod.objects.get(pk=pod_id).billing_ends_at
    assert ended is not None
    assert timedelta(0) <= ended - records[-1].period_end < timedelta(seconds=1)
    assert records[0].period_start == pod.started_at
    for earlier, later in zip(records, records[1:], strict=False):
        assert later.period_start == earlier.period_end  # contiguous, no overlap
    seconds = sum(r.seconds for r in records)
    total = seconds * 100
    assert [r.amount for r in records] == [r.seconds * 100 for r in records]
    shares = [r.amount * 80 // 100 for r in records]
    assert [r.provider_share for r in records] == shares

    wallet = LedgerAccount.objects.get(kind=AccountKind.USER_WALLET, user=user)
    payable = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider_id)
    revenue = LedgerAccount.objects.get(kind=AccountKind.PLATFORM_REVENUE)
    assert wallet.balance == 25_000_000 - total
    assert payable.balance == sum(shares)
    assert revenue.balance == total - sum(shares)
    assert api.get("/api/v1/users/balance").json()["balance_micros"] == wallet.balance
    usage = api.get("/api/v1/users/usage").json()
    assert sum(r["amount"] for r in usage["results"]) == total
    for tx in Transaction.objects.all():
        assert tx.entries.aggregate(s=Sum("amount"))["s"] == 0
    for account in LedgerAccount.objects.all():
        assert account.balance == (
            Entry.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or 0
        )
