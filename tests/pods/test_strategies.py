"""Placement strategies on our own nodes: the same capacity gives different placements per
strategy, and measured reliability (heartbeat gaps, pod failures) moves a host down."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.nodes.models import Node, NodeEvent, NodeStatus
from apps.pods.models import Pod, PodEvent, PodStatus
from apps.pods.reliability import host_reliability
from apps.pods.scheduler import schedule_pending
from apps.pods.strategy import balanced_score
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def place(user, strategy: str, **fields) -> Pod:
    pod = Pod.objects.create(
        owner=user,
        name=f"p-{strategy}",
        image="busybox",
        gpu_model=fields.pop("gpu_model", "RTX 4090"),
        gpu_count=1,
        strategy=strategy,
        cloud="own",
        **fields,
    )
    schedule_pending(pod_ids=[pod.pk])
    pod.refresh_from_db()
    assert pod.status == PodStatus.SCHEDULED, pod.status_reason
    return pod


def gap(node, *, hours_ago: float, minutes: float) -> None:
    """The node went silent (OFFLINE) for `minutes`, `hours_ago` hours ago."""
    down = timezone.now() - timedelta(hours=hours_ago)
    aged(node)
    for at, src, dst in (
        (down, NodeStatus.ONLINE, NodeStatus.OFFLINE),
        (down + timedelta(minutes=minutes), NodeStatus.OFFLINE, NodeStatus.ONLINE),
    ):
        event = NodeEvent.objects.create(node=node, from_status=src, to_status=dst, reason="t")
        NodeEvent.objects.filter(pk=event.pk).update(at=at)


def aged(*nodes) -> None:
    """Registered a month ago: the whole 30-day window is observed."""
    for node in nodes:
        Node.objects.filter(pk=node.pk).update(registered_at=timezone.now() - timedelta(days=31))


def test_a_host_with_heartbeat_gaps_ranks_below_an_equal_host_without(user):
    steady = make_node("steady", gpus=4, price=500_000)
    flaky = make_node("flaky", gpus=4, price=500_000)
    aged(steady)
    gap(flaky, hours_ago=5, minutes=90)
    scores = host_reliability([steady.pk, flaky.pk])
    assert scores[steady.pk].uptime == 1.0 and scores[flaky.pk].uptime < 1.0
    assert scores[flaky.pk].offline_seconds == 90 * 60
    assert scores[flaky.pk].score < scores[steady.pk].score
    for strategy in ("HIGHEST_RELIABILITY", "BALANCED"):
        assert place(user, strategy).node_id == steady.pk


def test_pod_failures_lower_a_hosts_score(user):
    good = make_node("good", gpus=2, price=500_000)
    bad = make_node("bad", gpus=2, price=500_000)
    for n in range(3):
        failed = Pod.objects.create(
            owner=user, name=f"f{n}", image="x", gpu_model="RTX 4090", gpu_count=1, node=bad
        )
        PodEvent.objects.create(
            pod=failed, from_status=PodStatus.RUNNING, to_status=PodStatus.FAILED, reason="x"
        )
    scores = host_reliability([good.pk, bad.pk])
    assert scores[bad.pk].failed_pods == 3 and scores[bad.pk].score == pytest.approx(1 - 3 / 5)
    assert place(user, "HIGHEST_RELIABILITY").node_id == good.pk


def test_the_same_capacity_gives_a_different_placement_per_strategy(user):
    # cheap: the lowest price, but it lost its heartbeat for a day last week
    cheap = make_node("cheap", gpus=2, price=400_000)
    gap(cheap, hours_ago=24 * 6, minutes=24 * 60)
    # solid: 10% dearer, never down
    solid = make_node("solid", gpus=2, price=440_000)
    aged(solid)

    assert place(user, "LOWEST_PRICE").node_id == cheap.pk
    assert place(user, "HIGHEST_RELIABILITY").node_id == solid.pk
    # BALANCED: 10% more for 3.3 points of uptime is worth it (see apps.pods.strategy)
    assert place(user, "BALANCED").node_id == solid.pk


def test_balanced_keeps_the_cheaper_host_when_its_gap_was_short(user):
    cheap = make_node("cheap", gpus=2, price=400_000)
    gap(cheap, hours_ago=30, minutes=60)  # one hour in 30 days: 0.14 points of uptime
    solid = make_node("solid", gpus=2, price=440_000)
    aged(solid)
    assert place(user, "BALANCED").node_id == cheap.pk
    assert place(user, "HIGHEST_RELIABILITY").node_id == solid.pk


def test_balanced_trades_price_against_reliability_as_documented():
    # one point of reliability is worth 6% of the cheapest price
    base = {"cheapest": 100, "value": 1.0, "best_value": 1.0}
    a = balanced_score(price=100, reliability=0.95, **base)
    b = balanced_score(price=123, reliability=0.99, **base)  # 23% dearer, 4 points better
    c = balanced_score(price=125, reliability=0.99, **base)  # 25% dearer
    assert b < a < c
