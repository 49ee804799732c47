"""Reads of pods that the portal pages share: what can be started now and at what price, a
user's pods, and how far along a pod is."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.nodes.models import Gpu, Node, Workload
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.lifecycle import FINAL
from apps.pods.models import ACTIVE_STATUSES, Pod, PodStatus, UsageRecord
from apps.pods.scheduler import CapacityView


@dataclass(frozen=True)
class Offer:
    """GPUs of one model that a new pod could get right now, and the cheapest price."""

    gpu_model: str
    vram_mb: int
    free_gpus: int
    max_gpus_per_node: int
    price_per_gpu_hour: int  # micro-dollars; for CPU, per pod-hour

    def as_dict(self) -> dict[str, object]:
        return {
            "gpu_model": self.gpu_model,
            "vram_mb": self.vram_mb,
            "free_gpus": self.free_gpus,
            "max_gpus_per_node": self.max_gpus_per_node,
            "price_per_gpu_hour": self.price_per_gpu_hour,
        }


def pod_offers() -> list[Offer]:
    """Free capacity by GPU model, read exactly as the scheduler reads it (`CapacityView`: free
    GPU rows on ONLINE nodes, each node's asking price), cheapest model first; plus CPU pods on
    any schedulable node. Capacity sources added later (upstream clouds) extend this list."""
    by_model: dict[str, list[int]] = {}  # model → [vram, free, max per node, price]
    for entry in CapacityView.load().entries:
        group = by_model.setdefault(entry.model, [0, 0, 0, entry.price])
        group[0] = max(group[0], entry.memory_mb)
        group[1] += entry.free
        group[2] = max(group[2], entry.free)
        group[3] = min(group[3], entry.price)
    offers = [
        Offer(model, vram, free, most, price)
        for model, (vram, free, most, price) in by_model.items()
    ]
    cpu_prices = [
        gpu_price_per_hour(node=node, gpu_model=CPU_MODEL) for node in Node.objects.schedulable()
    ]
    if cpu_prices:
        offers.append(Offer(CPU_MODEL, 0, 0, 0, min(cpu_prices)))
    return sorted(offers, key=lambda o: (o.gpu_model == CPU_MODEL, o.price_per_gpu_hour))


def gpu_model_choices(offers: list[Offer]) -> list[str]:
    """Models a pod may ask for: those on offer first, then every canonical model (a pod for a
    model with no free GPU waits in PENDING until one frees up)."""
    seen = [o.gpu_model for o in offers]
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
