"""How reliable our own (platform and community) hosts are, from measured facts over the last
30 days:

- uptime: the share of the window (or of the node's life, if younger) it was not OFFLINE. A
  node goes OFFLINE when its heartbeats stop for 3 intervals, so OFFLINE periods are the
  heartbeat gaps (from a →OFFLINE event to the next →ONLINE one, or to now);
- pod failures: pods on the node that ended FAILED in the window, against all the pods that
  ran there, smoothed (+2 in the denominator) so one pod does not decide a new host's fate.

score = uptime × (1 − failed / (pods + 2)), between 0 and 1. Upstream offers have their own
score (apps.sourcing.ranking.reliability: the provider's figure with our launch history)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from apps.nodes.models import Node, NodeEvent, NodeStatus
from apps.pods.models import Pod, PodEvent, PodStatus

WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class HostReliability:
    score: float
    uptime: float
    pods: int
    failed_pods: int
    offline_seconds: int


def host_reliability(
    node_ids: list[uuid.UUID], *, now: datetime | None = None
) -> dict[uuid.UUID, HostReliability]:
    """The score of each node, in three queries whatever the number of nodes."""
    now = now or timezone.now()
    since = now - WINDOW
    if not node_ids:
        return {}
    born = dict(Node.objects.filter(pk__in=node_ids).values_list("pk", "registered_at"))
    events: dict[uuid.UUID, list[tuple[datetime, str]]] = defaultdict(list)
    for node_id, at, to in (
        NodeEvent.objects.filter(node_id__in=node_ids, at__gte=since)
        .filter(Q(to_status=NodeStatus.OFFLINE) | Q(from_status=NodeStatus.OFFLINE))
        .order_by("at", "id")
        .values_list("node_id", "at", "to_status")
    ):
        events[node_id].append((at, to))
    pods = dict(
        Pod.objects.filter(node_id__in=node_ids, created_at__gte=since)
        .values("node_id")
        .annotate(n=Count("id"))
        .values_list("node_id", "n")
    )
    failed = dict(
        PodEvent.objects.filter(
            pod__node_id__in=node_ids, to_status=PodStatus.FAILED, at__gte=since
        )
        .values("pod__node_id")
        .annotate(n=Count("pod_id", distinct=True))
        .values_list("pod__node_id", "n")
    )
    out = {}
    for node_id in node_ids:
        start = max(since, born.get(node_id) or since)
        observed = max((now - start).total_seconds(), 1.0)
        offline = 0.0
        down_since: datetime | None = None
        for at, to in events.get(node_id, []):
            if to == NodeStatus.OFFLINE:
                down_since = down_since or at
            elif down_since is not None:
                offline += (at - down_since).total_seconds()
                down_since = None
        if down_since is not None:
            offline += (now - down_since).total_seconds()
        uptime = max(0.0, 1.0 - min(offline, observed) / observed)
        n, f = pods.get(node_id, 0), failed.get(node_id, 0)
        score = uptime * (1.0 - f / (n + 2))
        out[node_id] = HostReliability(
            score=round(score, 4),
            uptime=round(uptime, 4),
            pods=n,
            failed_pods=f,
            offline_seconds=int(offline),
        )
    return out
