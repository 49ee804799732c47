"""Reads of pods that the portal pages share: what can be started now and at what price, a
user's pods, and how far along a pod is."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, Sum
from django.utils.module_loading import import_string

from apps.accounts.models import User
from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.core.money import micros_to_usd
from apps.nodes.models import Gpu, Node, Workload
from apps.nodes.selectors import gpu_price_per_hour, gpus_available
from apps.pods.lifecycle import FINAL
from apps.pods.models import ACTIVE_STATUSES, Pod, PodStatus, UsageRecord
from apps.pods.reliability import host_reliability
from apps.pods.scheduler import CapacityView


@dataclass(frozen=True)
class Offer:
    """GPUs of one model that a new pod could get right now, and the cheapest price: on our
    own nodes (`source` own; kind platform or community) or at an upstream cloud (`source`
    upstream; price with our markup; `provider` empty when the operator hides the names)."""

    gpu_model: str
    vram_mb: int
    free_gpus: int
    max_gpus_per_node: int
    price_per_gpu_hour: int  # micro-dollars; for CPU, per pod-hour
    source: str = "own"
    provider_kind: str = "platform"
    provider: str = ""
    reliability: float | None = None  # 0..1, measured (apps.pods.reliability / sourcing)
    spot: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "gpu_model": self.gpu_model,
            "vram_mb": self.vram_mb,
            "free_gpus": self.free_gpus,
            "max_gpus_per_node": self.max_gpus_per_node,
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "source": self.source,
            "provider_kind": self.provider_kind,
            "provider": self.provider,
            "reliability": self.reliability,
            "spot": self.spot,
        }


@cache
def _offer_sources(paths: tuple[str, ...]) -> tuple[Callable[[], list[Offer]], ...]:
    return tuple(import_string(path) for path in paths)


def pod_offers() -> list[Offer]:
    """One price list: free capacity by GPU model on our nodes, read exactly as the scheduler
    reads it (`CapacityView`: free GPU rows on ONLINE nodes, each node's asking price), one
    row per model and kind of host (platform, community) with the measured reliability of
    its cheapest host; CPU pods on any schedulable node; then every row the upstream sources
    (POD_OFFER_SOURCES) add. Cheapest first."""
    view = CapacityView.load()
    scores = host_reliability(list({e.node.pk for e in view.entries}))
    # (model, kind) → [vram, free, max per node, price, reliability of the cheapest]
    by_model: dict[tuple[str, str], list[float]] = {}
    for entry in view.entries:
        kind = "community" if entry.node.provider_id else "platform"
        score = scores[entry.node.pk].score if entry.node.pk in scores else 1.0
        group = by_model.setdefault((entry.model, kind), [0, 0, 0, entry.price, score])
        group[0] = max(group[0], entry.memory_mb)
        group[1] += entry.free
        group[2] = max(group[2], entry.free)
        if entry.price < group[3] or (entry.price == group[3] and score > group[4]):
            group[3], group[4] = entry.price, score
    offers = [
        Offer(model, int(vram), int(free), int(most), int(price), "own", kind, "", score)
        for (model, kind), (vram, free, most, price, score) in by_model.items()
    ]
    cpu_prices = [
        gpu_price_per_hour(node=node, gpu_model=CPU_MODEL) for node in Node.objects.schedulable()
    ]
    if cpu_prices:
        offers.append(Offer(CPU_MODEL, 0, 0, 0, min(cpu_prices)))
    for source in _offer_sources(tuple(settings.POD_OFFER_SOURCES)):
        offers += source()
    return sorted(offers, key=lambda o: (o.gpu_model == CPU_MODEL, o.spot, o.price_per_gpu_hour))


def available_gpus() -> list[dict[str, object]]:
    """GET /api/v1/nodes/available (NODES_AVAILABLE_SELECTOR): the nodes app's own rows (free
    GPUs by model on schedulable nodes) with the best measured reliability among the nodes
    that have the model, then the upstream rows of the price list."""
    own = gpus_available()
    nodes = list(Node.objects.schedulable().values_list("pk", flat=True))
    scores = host_reliability(nodes)
    best: dict[str, float] = {}
    for node_id, model in Gpu.objects.filter(node_id__in=nodes).values_list("node_id", "model"):
        best[model] = max(best.get(model, 0.0), scores[node_id].score)
    rows: list[dict[str, object]] = [
        {
            **row,
            "source": "own",
            "provider_kind": "our nodes",
            "provider": "",
            "reliability": best.get(str(row["gpu_model"])),
            "spot": False,
        }
        for row in own
    ]
    for source in _offer_sources(tuple(settings.POD_OFFER_SOURCES)):
        rows += [
            {
                **o.as_dict(),
                "nodes": 0,
                "price_per_gpu_hour_usd": micros_to_usd(o.price_per_gpu_hour),
            }
            for o in source()
        ]
    return rows


def gpu_model_choices(offers: list[Offer]) -> list[str]:
    """Models a pod may ask for: those on offer first, then every canonical model (a pod for a
    model with no free GPU waits in PENDING until one frees up)."""
    seen = list(dict.fromkeys(o.gpu_model for o in offers))
    return seen + [m for m in [*CANONICAL, CPU_MODEL] if m not in seen]


def user_pods(user: object, *, active_only: bool = False) -> QuerySet[Pod]:
    pods = Pod.objects.for_user(user).select_related("node").exclude(status=PodStatus.TERMINATED)
    if active_only:
        pods = pods.filter(status__in=ACTIVE_STATUSES)
    return pods


# How far along the way to RUNNING a pod is, for the progress bar (out of PROGRESS_STEPS).
PROGRESS: dict[str, int] = {
    PodStatus.PENDING: 1,
    PodStatus.PROVISIONING: 2,
    PodStatus.SCHEDULED: 3,
    PodStatus.STARTING: 4,
    PodStatus.RUNNING: 5,
}
PROGRESS_STEPS = 5


def pod_is_settled(pod: Pod) -> bool:
    """Nothing will change without someone acting: no need to keep watching it."""
    return pod.status in FINAL


def pod_is_transitioning(pod: Pod) -> bool:
    return pod.status not in FINAL and pod.status != PodStatus.RUNNING


def pod_workload(pod: Pod) -> Workload | None:
    if pod.node_id is None:
        return None
    return Workload.objects.filter(node_id=pod.node_id, pod_id=pod.pk).first()


def pod_gpus(pod: Pod) -> list[Gpu]:
    """The GPUs a pod holds, with their latest telemetry (none before it is placed)."""
    if pod.node_id is None or not pod.gpu_indices or pod.status in FINAL:
        return []
    return list(Gpu.objects.filter(node_id=pod.node_id, index__in=pod.gpu_indices))


def usage_records(
    user: User,
    *,
    pod_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[UsageRecord]:
    """The user's billed intervals, newest first, optionally for one pod and a time range."""
    records = UsageRecord.objects.filter(owner=user).select_related("pod")
    if pod_id:
        records = records.filter(pod_id=pod_id)
    if since:
        records = records.filter(period_start__gte=since)
    if until:
        records = records.filter(period_start__lt=until)
    return records.order_by("-period_start", "-id")


def node_usage_since(node_ids: list[Any], since: datetime) -> dict[Any, dict[str, int]]:
    """What pods on `node_ids` earned their hosts (`earned`, micro-dollars) and were billed
    for (`gpu_seconds`) in usage periods ending after `since`, per node. The providers'
    dashboard reads it through settings.PROVIDER_NODE_USAGE_SELECTOR (providers sit below
    pods, so they never import pods)."""
    return {
        row["node_id"]: {"earned": row["earned"] or 0, "gpu_seconds": row["gpu_seconds"] or 0}
        for row in UsageRecord.objects.filter(node_id__in=node_ids, period_end__gt=since)
        .values("node_id")
        .annotate(earned=Sum("provider_share"), gpu_seconds=Sum("seconds"))
    }
