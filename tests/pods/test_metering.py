"""The metering tick: exact charges, no double charging, heartbeat and stop cut-offs, the
overdraft floor, the community split."""

import uuid
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction
from apps.billing.services import wallet_for
from apps.core.money import prorate
from apps.nodes.models import Node
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.pods.services import pod_create, pod_stop
from tests.factories import POD, fund, make_node, report_container

pytestmark = pytest.mark.django_db

PRICE = 690_000  # $0.69 per GPU-hour


def running_pod(user, node, *, started_ago_s: int, gpu_count: int = 1, **spec):
    pod = pod_create(owner=user, spec={**POD, "gpu_count": gpu_count, **spec}).pod
    started = timezone.now() - timedelta(seconds=started_ago_s)
    report_container(node, pod.pk, "running", started_at=started)
    pod.refresh_from_db()
    assert pod.status == PodStatus.RUNNING and pod.billed_until == started
    return pod


def wallet_balance(user) -> int:
    return wallet_for(user).balance


def assert_ledger_consistent() -> None:
    for tx in Transaction.objects.all():
        assert tx.entries.aggregate(s=Sum("amount"))["s"] == 0
    for account in LedgerAccount.objects.all():
        total = Entry.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or 0
        assert account.balance == total


def test_tick_charges_exactly_and_never_twice(user):
    fund(user, 10_000_000)
    node = make_node(gpus=2, price=PRICE)
    pod = running_pod(user, node, started_ago_s=125, gpu_count=2)
    now = timezone.now()
    node_heartbeat_at = Node.objects.get(pk=node.pk).last_heartbeat_at

    first = meter_tick(now=now)
    second = meter_tick(now=now)

    seconds = int((min(now, node_heartbeat_at) - pod.billed_until).total_seconds())
    expected = prorate(per_hour=2 * PRICE, seconds=seconds)
    assert first.charged == expected and second.charged == 0
    record = UsageRecord.objects.get(pod=pod)
    assert (record.seconds, record.amount, record.gpu_count) == (seconds, expected, 2)
    assert wallet_balance(user) == 10_000_000 - expected
    revenue = LedgerAccount.objects.get(kind=AccountKind.PLATFORM_REVENUE)
    assert revenue.balance == expected
    assert_ledger_consistent()


def test_billing_stops_at_the_nodes_last_heartbeat(user):
    fund(user, 10_000_000)
    node = make_node(price=PRICE)
    pod = running_pod(user, node, started_ago_s=600)
    last_beat = pod.billed_until + timedelta(seconds=60)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=last_beat)

    meter_tick(now=timezone.now())

    pod.refresh_from_db()
    assert pod.billed_until == last_beat
    assert UsageRecord.objects.get(pod=pod).seconds == 60
    meter_tick(now=timezone.now())
    assert UsageRecord.objects.filter(pod=pod).count() == 1


def test_stop_bills_to_the_stop_and_no_further(user):
    fund(user, 10_000_000)
    node = make_node(price=PRICE)
    pod = running_pod(user, node, started_ago_s=30)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())
    pod_stop(pod=pod)
    pod.refresh_from_db()
    charged = UsageRecord.objects.filter(pod=pod).aggregate(s=Sum("seconds"))["s"]
    assert pod.status == PodStatus.STOPPING
    # Whole seconds are billed; the sub-second remainder of the last interval is not.
    assert timedelta(0) <= pod.billing_ends_at - pod.billed_until < timedelta(seconds=1)
    assert 29 <= charged <= 31

    meter_tick(now=timezone.now() + timedelta(hours=1))

    assert UsageRecord.objects.filter(pod=pod).aggregate(s=Sum("seconds"))["s"] == charged
    assert_ledger_consistent()


def test_overdraft_floor_caps_the_charge_and_stops_the_pods(user, settings):
    fund(user, 1_000)  # a tenth of a cent
    node = make_node(price=PRICE)
    pod = running_pod(user, node, started_ago_s=3600)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())

    result = meter_tick(now=timezone.now())

    assert result.charged == 1_000
    assert wallet_balance(user) == 0
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING
    assert "balance exhausted" in pod.status_reason
    assert_ledger_consistent()


def test_community_node_splits_by_fee(user):
    fund(user, 10_000_000)
    provider_id = uuid.uuid4()
    node = make_node(price=1_000_000, provider_id=provider_id)
    running_pod(user, node, started_ago_s=3600)
    Node.objects.filter(pk=node.pk).update(
        last_heartbeat_at=Pod.objects.get().billed_until + timedelta(seconds=3600)
    )

    meter_tick(now=timezone.now() + timedelta(seconds=10))

    payable = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider_id)
    revenue = LedgerAccount.objects.get(kind=AccountKind.PLATFORM_REVENUE)
    assert payable.balance == 800_000  # Basic tier: 20% platform fee
    assert revenue.balance == 200_000
    assert wallet_balance(user) == 9_000_000
    assert UsageRecord.objects.get().provider_share == 800_000


def test_node_offline_bills_to_last_heartbeat_then_reschedules_or_fails(user, settings):
    from django.test import TestCase

    settings.NODE_OFFLINE_GRACE_S = 30  # an operator's short grace (default 5 min)

    from apps.nodes.services import nodes_mark_silent_offline

    fund(user, 10_000_000)
    node = make_node("old", gpus=2, price=PRICE)
    keep = running_pod(user, node, started_ago_s=120, restartable=True)
    lose = running_pod(user, node, started_ago_s=120)
    last_beat = timezone.now() - timedelta(seconds=60)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=last_beat)
    make_node("fresh", gpus=1, price=PRICE)

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert nodes_mark_silent_offline() == [node.pk]

    keep.refresh_from_db()
    lose.refresh_from_db()
    assert lose.status == PodStatus.FAILED and "went offline" in lose.status_reason
    assert keep.status == PodStatus.PENDING and "rescheduling" in keep.status_reason
    for pod in (keep, lose):
        last = UsageRecord.objects.filter(pod=pod).order_by("-period_end").first()
        assert timedelta(0) <= last_beat - last.period_end < timedelta(seconds=1)
    from apps.pods.scheduler import schedule_pending

    assert schedule_pending().placed == 1
    keep.refresh_from_db()
    assert keep.status == PodStatus.SCHEDULED and keep.node.hostname == "fresh"
    assert_ledger_consistent()


def test_pod_placed_again_on_the_same_node_bills_from_its_new_start(user, settings):
    """Regression: the workload kept the first run's started_at, so the restarted pod was
    billed from it (or every later tick failed on the usage idempotency key)."""
    settings.NODE_OFFLINE_GRACE_S = 30  # an operator's short grace (default 5 min)
    from django.test import TestCase

    from apps.nodes.models import CommandType, NodeCommand
    from apps.nodes.services import node_heartbeat, nodes_mark_silent_offline
    from apps.pods.scheduler import schedule_pending
    from tests.factories import ack

    fund(user, 10_000_000)
    node = make_node(price=360_000)
    pod = running_pod(user, node, started_ago_s=3600, restartable=True)
    t0 = pod.billed_until
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=t0 + timedelta(minutes=10))
    meter_tick(now=t0 + timedelta(minutes=10))
    with TestCase.captureOnCommitCallbacks(execute=True):
        nodes_mark_silent_offline(now=t0 + timedelta(minutes=11))
    node_heartbeat(node=Node.objects.get(pk=node.pk), gpus=[], system={}, containers=[])
    schedule_pending()
    pod.refresh_from_db()
    assert pod.status == PodStatus.SCHEDULED and pod.node_id == node.pk
    start = NodeCommand.objects.filter(node=node, type=CommandType.START_POD).latest("created_at")
    restarted_at = timezone.now()

    ack(node, start.pk, succeeded=True, result={"container_id": "c" * 12, "state": "running"})
    pod.refresh_from_db()
    assert pod.started_at >= restarted_at  # not the first run's start
    meter_tick(now=timezone.now() + timedelta(seconds=30))  # must not raise

    first_run, *second_run = UsageRecord.objects.filter(pod=pod).order_by("period_start")
    assert first_run.period_start == t0 and first_run.seconds == 600
    assert all(r.period_start >= restarted_at for r in second_run)
    assert_ledger_consistent()
