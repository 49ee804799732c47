"""Placement (DESIGN.md §6): fit a pending pod's GPU model, count, VRAM and price cap onto the
GPUs of ONLINE nodes, cheapest first, best fit among equals.

Claims are made with `SELECT … FOR UPDATE SKIP LOCKED` on the node's free GPU rows, and the
claim itself is a `GpuAllocation` row whose primary key is the GPU: two schedulers running at
once skip each other's locked rows, and even a logic error could not give one GPU to two pods.

Capacity sources are tried in order (`POD_CAPACITY_SOURCES`): our own nodes first; the sourcing
app adds upstream clouds as a second source (a source that rents a machine moves the pod to
PROVISIONING and places it when the machine's agent registers)."""

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils.module_loading import import_string

from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.core.money import micros_to_usd
from apps.nodes import services as node_services
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.lifecycle import pod_transition
from apps.pods.models import GpuAllocation, Pod, PodStatus

logger = logging.getLogger(__name__)


@dataclass
class NodeCapacity:
    node: Node
    model: str
    memory_mb: int
    free: int
    price: int  # per GPU-hour, micro-dollars


@dataclass
class CapacityView:
    """Free GPUs per (node, model), read once per scheduling pass and kept current as the pass
    places pods, so a pass costs one read plus a claim per pod."""

    entries: list[NodeCapacity] = field(default_factory=list)
    _cpu_nodes: list[NodeCapacity] | None = None

    @classmethod
    def load(cls) -> "CapacityView":
        rows = (
            Gpu.objects.filter(node__status=NodeStatus.ONLINE, allocation__isnull=True)
            .values("node_id", "model", "memory_total_mb")
            .annotate(free=Count("id"))
        )
        nodes = Node.objects.in_bulk({row["node_id"] for row in rows})
        entries = [
            NodeCapacity(
                node=nodes[row["node_id"]],
                model=row["model"],
                memory_mb=row["memory_total_mb"],
                free=row["free"],
                price=gpu_price_per_hour(node=nodes[row["node_id"]], gpu_model=row["model"]),
            )
            for row in rows
        ]
        return cls(entries=entries)

    def candidates(self, pod: Pod) -> list[NodeCapacity]:
        if pod.gpu_count == 0:
            return self._cpu_candidates(pod)
        fits = [
            c
            for c in self.entries
            if c.model == pod.gpu_model
            and c.memory_mb >= pod.min_vram_mb
            and c.free >= pod.gpu_count
            and (pod.price_cap_per_gpu_hour is None or c.price <= pod.price_cap_per_gpu_hour)
        ]
        # Cheapest first; among equal prices the fullest node that still fits (best fit keeps
        # big nodes whole for big pods); a random tie-break spreads concurrent schedulers.
        return sorted(fits, key=lambda c: (c.price, c.free, random.random()))  # noqa: S311

    def _cpu_candidates(self, pod: Pod) -> list[NodeCapacity]:
        """CPU pods (no GPU) go to any online node, CPU-only nodes first so GPUs stay free, then
        the cheapest. CPU and memory are not reserved per pod yet."""
        if self._cpu_nodes is None:
            self._cpu_nodes = sorted(
                (
                    NodeCapacity(
                        node=n,
                        model=CPU_MODEL,
                        memory_mb=0,
                        free=n.gpu_total,
                        price=gpu_price_per_hour(node=n, gpu_model=CPU_MODEL),
                    )
                    for n in Node.objects.schedulable().annotate(gpu_total=Count("gpus"))
                ),
                key=lambda c: (c.free > 0, c.price),
            )
        cap = pod.price_cap_per_gpu_hour
        return [c for c in self._cpu_nodes if cap is None or c.price <= cap]


@dataclass(frozen=True)
class Placement:
    node: Node
    gpu_indices: list[int]
    price_per_gpu_hour: int


class PodGoneError(Exception):
    """The pod is no longer ours to place: another scheduler holds or placed it, or it
    was stopped."""


def _claim(pod_id: uuid.UUID, candidate: NodeCapacity) -> Placement | None:
    """In one transaction: lock the pod (still PENDING), lock `gpu_count` free GPUs of the node,
    record the allocation, move the pod to SCHEDULED and queue its start command. None: the
    node had no room after all."""
    with transaction.atomic():
        pod = (
            Pod.objects.select_for_update(skip_locked=True)
            .filter(pk=pod_id, status=PodStatus.PENDING)
            .first()
        )
        if pod is None:
            raise PodGoneError(pod_id)
        gpus = (
            []
            if pod.gpu_count == 0
            else list(
                Gpu.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    node=candidate.node,
                    node__status=NodeStatus.ONLINE,
                    model=pod.gpu_model,
                    memory_total_mb__gte=pod.min_vram_mb,
                    allocation__isnull=True,
                )
                .order_by("index")[: pod.gpu_count]
            )
        )
        if len(gpus) < pod.gpu_count:
            candidate.free = len(gpus)
            return None
        try:
            with transaction.atomic():
                GpuAllocation.objects.bulk_create(GpuAllocation(gpu=g, pod=pod) for g in gpus)
        except IntegrityError:
            return None  # lost a race for one of these GPUs; try the next node
        placement = Placement(
            node=candidate.node,
            gpu_indices=[g.index for g in gpus],
            price_per_gpu_hour=candidate.price,
        )
        pod.node = placement.node
        pod.gpu_indices = placement.gpu_indices
        pod.price_per_gpu_hour = placement.price_per_gpu_hour
        pod_transition(
            pod=pod,
            to=PodStatus.SCHEDULED,
            reason=(
                f"placed on {placement.node.hostname}: {pod.gpu_count}× {pod.gpu_model} "
                f"at ${micros_to_usd(placement.price_per_gpu_hour)}/GPU-h"
            ),
            extra_fields=("node", "gpu_indices", "price_per_gpu_hour"),
        )
        node_services.workload_start(node=placement.node, pod_id=pod.pk, spec=start_spec(pod))
    candidate.free -= pod.gpu_count
    return placement


def start_spec(pod: Pod) -> dict[str, object]:
    """The start_pod payload of docs/agent-protocol.md (without pod_id)."""
    return {
        "image": pod.image,
        "command": pod.command,
        "env": pod.env,
        "ports": [
            {
                "container_port": p["container_port"],
                "protocol": p.get("protocol", "tcp"),
                "host_port": None,
            }
            for p in pod.ports
        ],
        "gpu_indices": pod.gpu_indices,
        "cpu_limit": None,
        "memory_limit_mb": None,
        "restart_policy": "unless-stopped" if pod.restartable else "no",
        "network_mode": None,
    }


def unplaceable_reason(pod: Pod) -> str:
    cap = (
        f" at or under ${micros_to_usd(pod.price_cap_per_gpu_hour)}/GPU-h"
        if pod.price_cap_per_gpu_hour is not None
        else ""
    )
    vram = f" with ≥ {pod.min_vram_mb} MiB" if pod.min_vram_mb else ""
    return (
        f"Waiting for capacity: no online node has {pod.gpu_count} free {pod.gpu_model} "
        f"GPU(s){vram}{cap}."
    )


def community_nodes(pod: Pod, capacity: CapacityView) -> Placement | None:
    """Capacity source: our platform and community nodes."""
    for candidate in capacity.candidates(pod):
        placement = _claim(pod.pk, candidate)
        if placement is not None:
            return placement
    return None


@dataclass
class PassResult:
    placed: int = 0
    waiting: int = 0
    skipped: int = 0  # taken by another scheduler or stopped meanwhile


CapacitySource = Callable[[Pod, CapacityView], Placement | None]


@cache
def _sources(paths: tuple[str, ...]) -> tuple[CapacitySource, ...]:
    return tuple(import_string(path) for path in paths)


def schedule_pending(*, limit: int = 1000, pod_ids: list[uuid.UUID] | None = None) -> PassResult:
    """One scheduling pass over up to `limit` PENDING pods, oldest first. Safe to run in several
    processes at once."""
    pending = Pod.objects.filter(status=PodStatus.PENDING)
    if pod_ids is not None:
        pending = pending.filter(pk__in=pod_ids)
    pods = list(pending.order_by("created_at")[:limit])
    result = PassResult()
    if not pods:
        return result
    capacity = CapacityView.load()
    sources = _sources(tuple(settings.POD_CAPACITY_SOURCES))
    for pod in pods:
        try:
            if any(source(pod, capacity) is not None for source in sources):
                result.placed += 1
                continue
        except PodGoneError:
            result.skipped += 1
            continue
        result.waiting += 1
        reason = unplaceable_reason(pod)
        if pod.status_reason != reason:
            Pod.objects.filter(pk=pod.pk, status=PodStatus.PENDING).update(status_reason=reason)
    return result


def lowest_price(gpu_model: str) -> int | None:
    """The cheapest price any node of ours asks for `gpu_model` (online or not)."""
    nodes = Node.objects.exclude(status=NodeStatus.RETIRED)
    if gpu_model != CPU_MODEL:
        nodes = nodes.filter(gpus__model=gpu_model).distinct()
    prices = [gpu_price_per_hour(node=n, gpu_model=gpu_model) for n in nodes]
    return min(prices) if prices else None


def known_gpu_models() -> set[str]:
    return (
        {CPU_MODEL} | set(CANONICAL) | set(Gpu.objects.values_list("model", flat=True).distinct())
    )
