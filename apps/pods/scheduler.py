"""Placement (DESIGN.md §6): fit a pending pod's GPU model, count, VRAM and price cap onto the
GPUs of ONLINE nodes, cheapest first, best fit among equals.

Pods are placed in batches, one transaction each. Claims are made with `SELECT … FOR UPDATE
SKIP LOCKED` on the pods and on the chosen nodes' free GPU rows, and the claim itself is a
`GpuAllocation` row whose primary key is the GPU: two schedulers running at once skip each
other's locked rows, and even a logic error could not give one GPU to two pods.

Capacity sources are tried in order (`POD_CAPACITY_SOURCES`): our own nodes first; the sourcing
app adds upstream clouds as a second source (a source that rents a machine moves the pod to
PROVISIONING and places it when the machine's agent registers)."""

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils.module_loading import import_string

from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.core.money import micros_to_usd
from apps.nodes import services as node_services
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.lifecycle import pod_transition_event
from apps.pods.models import GpuAllocation, Pod, PodCloud, PodEvent, PodStatus, PodStrategy
from apps.pods.reliability import host_reliability
from apps.pods.strategy import balanced_score

logger = logging.getLogger(__name__)


@dataclass
class NodeCapacity:
    node: Node
    model: str
    memory_mb: int
    free: int
    price: int  # per GPU-hour, micro-dollars
    reliability: float = 1.0  # apps.pods.reliability, filled in when a strategy needs it


@dataclass
class CapacityView:
    """Free GPUs per (node, model), read once per scheduling pass and kept current as the pass
    places pods, so a pass costs one read plus a claim per pod."""

    entries: list[NodeCapacity] = field(default_factory=list)
    _cpu_nodes: list[NodeCapacity] | None = None
    _scored: bool = False

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
        # In strategy order (cheapest first for LOWEST_PRICE); among equals the fullest node
        # that still fits (best fit keeps big nodes whole for big pods); a random tie-break
        # spreads concurrent schedulers.
        return self.ranked(fits, pod.strategy)

    def ranked(self, fits: list[NodeCapacity], strategy: str) -> list[NodeCapacity]:
        def tail(c: NodeCapacity) -> tuple[float, ...]:
            return (c.free, random.random())  # noqa: S311 - a tie-break, not crypto

        if strategy == PodStrategy.LOWEST_PRICE or not fits:
            return sorted(fits, key=lambda c: (c.price, *tail(c)))
        if strategy == PodStrategy.BEST_VALUE:
            return sorted(fits, key=lambda c: (c.price / max(c.memory_mb, 1), c.price, *tail(c)))
        self._score()
        if strategy == PodStrategy.HIGHEST_RELIABILITY:
            return sorted(fits, key=lambda c: (-c.reliability, c.price, *tail(c)))
        cheapest = min(c.price for c in fits)
        best_value = min(c.price / max(c.memory_mb / 1024, 1) for c in fits)
        return sorted(
            fits,
            key=lambda c: (
                balanced_score(
                    price=c.price,
                    cheapest=cheapest,
                    value=c.price / max(c.memory_mb / 1024, 1),
                    best_value=best_value,
                    reliability=c.reliability,
                ),
                c.price,
                *tail(c),
            ),
        )

    def _score(self) -> None:
        """Measured reliability of every node in the view (three queries, once a pass)."""
        if self._scored:
            return
        scores = host_reliability(list({c.node.pk for c in self.entries}))
        for c in self.entries:
            c.reliability = scores[c.node.pk].score if c.node.pk in scores else 1.0
        self._scored = True

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


@dataclass
class BatchOutcome:
    placed: set[uuid.UUID] = field(default_factory=set)


def _take_gpus(
    free: list[tuple[int, int, str, int]], pod: Pod
) -> list[tuple[int, int, str, int]] | None:
    """Remove and return `pod.gpu_count` fitting GPUs (id, index, model, MiB) from `free`."""
    fits = [g for g in free if g[2] == pod.gpu_model and g[3] >= pod.min_vram_mb]
    if len(fits) < pod.gpu_count:
        return None
    chosen = fits[: pod.gpu_count]
    for g in chosen:
        free.remove(g)
    return chosen


def community_nodes(pods: list[Pod], capacity: CapacityView) -> BatchOutcome:
    """Capacity source: our platform and community nodes.

    Gets a batch of PENDING pods that the caller has locked, in the caller's transaction. Plans
    each onto the cheapest fitting node of the in-memory capacity view, locks the planned
    nodes' free GPU rows in one query (SKIP LOCKED: GPUs being claimed by another scheduler
    are not ours), assigns them, and writes allocations, events, pods, workloads and start
    commands with one statement each. A pod whose node turned out fuller than the view said
    stays PENDING for the next pass."""
    outcome = BatchOutcome()
    plan: list[tuple[Pod, NodeCapacity]] = []
    for pod in own_cloud_pods(pods):
        candidates = capacity.candidates(pod)
        if candidates:
            candidates[0].free -= pod.gpu_count
            plan.append((pod, candidates[0]))
    if not plan:
        return outcome
    free: dict[uuid.UUID, list[tuple[int, int, str, int]]] = defaultdict(list)
    gpu_nodes = {c.node.pk for pod, c in plan if pod.gpu_count}
    if gpu_nodes:
        for gpu_id, node_id, index, model, memory in (
            Gpu.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(node_id__in=gpu_nodes, node__status=NodeStatus.ONLINE, allocation__isnull=True)
            .order_by("node_id", "index")
            .values_list("id", "node_id", "index", "model", "memory_total_mb")
        ):
            free[node_id].append((gpu_id, index, model, memory))
        # The locking SELECT read "no allocation" from its snapshot: a scheduler that held
        # one of these rows and committed while that statement ran has allocated it since.
        # Now that we hold the locks, a new statement sees every committed allocation.
        claimed = set(
            GpuAllocation.objects.filter(
                gpu_id__in=[g[0] for gpus in free.values() for g in gpus]
            ).values_list("gpu_id", flat=True)
        )
        if claimed:
            for node_id in free:
                free[node_id] = [g for g in free[node_id] if g[0] not in claimed]
    allocations: list[GpuAllocation] = []
    events: list[PodEvent] = []
    placed_pods: list[Pod] = []
    starts: list[tuple[Node, uuid.UUID, dict[str, object]]] = []
    for pod, candidate in plan:
        chosen = _take_gpus(free[candidate.node.pk], pod) if pod.gpu_count else []
        if chosen is None:
            candidate.free = 0  # fuller than the view said: someone else got there first
            continue
        reason = (
            f"placed on {candidate.node.hostname}: {pod.gpu_count}× {pod.gpu_model} "
            f"at ${micros_to_usd(candidate.price)}/GPU-h"
        )
        allocations += [GpuAllocation(gpu_id=g[0], pod=pod) for g in chosen]
        events.append(pod_transition_event(pod=pod, to=PodStatus.SCHEDULED, reason=reason))
        pod.node = candidate.node
        pod.gpu_indices = [g[1] for g in chosen]
        pod.price_per_gpu_hour = candidate.price
        placed_pods.append(pod)
        starts.append((candidate.node, pod.pk, start_spec(pod)))
    GpuAllocation.objects.bulk_create(allocations)
    PodEvent.objects.bulk_create(events)
    Pod.objects.bulk_update(
        placed_pods, ["status", "status_reason", "node", "gpu_indices", "price_per_gpu_hour"]
    )
    node_services.workloads_start(starts=starts)
    outcome.placed = {p.pk for p in placed_pods}
    return outcome


def own_cloud_pods(pods: list[Pod]) -> list[Pod]:
    """The pods our own nodes may take: not `cloud: upstream`, and not spot pods (spot
    capacity is an upstream cloud's bid market; our nodes are never interruptible)."""
    return [p for p in pods if p.cloud != PodCloud.UPSTREAM and not p.interruptible]


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


@dataclass
class PassResult:
    placed: int = 0
    waiting: int = 0


# A source gets the pods still unplaced (locked, inside the pass's transaction: it must not do
# slow I/O there, only record what to do) and the capacity view, and says which it placed.
CapacitySource = Callable[[list[Pod], CapacityView], BatchOutcome]


@cache
def _sources(paths: tuple[str, ...]) -> tuple[CapacitySource, ...]:
    return tuple(import_string(path) for path in paths)


def schedule_pending(
    *, limit: int = 1000, pod_ids: list[uuid.UUID] | None = None, batch: int = 100
) -> PassResult:
    """One scheduling pass over up to `limit` PENDING pods, oldest first, `batch` pods per
    transaction. Each batch is locked with SKIP LOCKED, so schedulers running at once take
    disjoint batches instead of racing for the same pods."""
    result = PassResult()
    capacity: CapacityView | None = None
    sources = _sources(tuple(settings.POD_CAPACITY_SOURCES))
    seen: set[uuid.UUID] = set()
    while len(seen) < limit:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Nothing leaves the database before this commits (agents fetch the start
                # commands later): a crash that loses the commit only leaves the pods PENDING
                # to be placed again, so the WAL flush need not be waited for.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            pending = Pod.objects.filter(status=PodStatus.PENDING).exclude(pk__in=seen)
            if pod_ids is not None:
                pending = pending.filter(pk__in=pod_ids)
            pods = list(
                pending.select_for_update(skip_locked=True).order_by("created_at")[
                    : min(batch, limit - len(seen))
                ]
            )
            if not pods:
                break
            seen.update(p.pk for p in pods)
            capacity = capacity or CapacityView.load()
            remaining = pods
            for source in sources:
                if not remaining:
                    break
                outcome = source(remaining, capacity)
                result.placed += len(outcome.placed)
                remaining = [p for p in remaining if p.pk not in outcome.placed]
            result.waiting += len(remaining)
            for pod in remaining:
                reason = unplaceable_reason(pod)
                if pod.status_reason != reason:
                    Pod.objects.filter(pk=pod.pk).update(status_reason=reason)
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
