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

from apps.core import metrics
from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.core.money import micros_to_usd
from apps.nodes import services as node_services
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.lifecycle import pod_transition_event
from apps.pods.models import GpuAllocation, Pod, PodCloud, PodEvent, PodStatus, PodStrategy
from apps.pods.reliability import host_reliability
from apps.pods.resources import Needs, NodeResources, node_resources
from apps.pods.ssh import ssh_keys_by_owner, ssh_public_keys
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
    """Free GPUs per (node, model) and free CPU/RAM/disk per node, read once per scheduling
    pass and kept current as the pass places pods, so a pass costs one read plus a claim per
    pod. Placement re-checks CPU/RAM/disk under the node's lock (`community_nodes`)."""

    entries: list[NodeCapacity] = field(default_factory=list)
    resources: dict[uuid.UUID, NodeResources] = field(default_factory=dict)
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
        return cls(
            entries=entries, resources=node_resources(Node.objects.filter(status=NodeStatus.ONLINE))
        )

    def fits(self, pod: Pod, node_id: uuid.UUID) -> bool:
        resources = self.resources.get(node_id)
        return resources is not None and not resources.shortfall(resources.needs(pod))

    def candidates(self, pod: Pod) -> list[NodeCapacity]:
        if pod.gpu_count == 0:
            return self._cpu_candidates(pod)
        fits = [
            c
            for c in self.entries
            if c.model == pod.gpu_model
            and (pod.node_id is None or c.node.pk == pod.node_id)  # pinned: resume, volume
            and c.memory_mb >= pod.min_vram_mb
            and c.free >= pod.gpu_count
            and (pod.price_cap_per_gpu_hour is None or c.price <= pod.price_cap_per_gpu_hour)
            and self.fits(pod, c.node.pk)
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
        """CPU pods (no GPU) go to any online node with the CPU and RAM they need, CPU-only
        nodes first so GPUs stay free, then the cheapest."""
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
        return [
            c
            for c in self._cpu_nodes
            if (cap is None or c.price <= cap)
            and (pod.node_id is None or c.node.pk == pod.node_id)
            and self.fits(pod, c.node.pk)
        ]


@dataclass
class BatchOutcome:
    placed: set[uuid.UUID] = field(default_factory=set)
    # Pods planned onto a node whose free GPUs another scheduler had locked meanwhile: the
    # pass tries them again with a fresh view (see schedule_pending).
    contended: set[uuid.UUID] = field(default_factory=set)


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
            chosen_node = candidates[0]
            chosen_node.free -= pod.gpu_count
            resources = capacity.resources[chosen_node.node.pk]
            resources.take(resources.needs(pod))
            plan.append((pod, chosen_node))
    if not plan:
        return outcome
    # CPU, RAM and disk are claimed under the planned nodes' row locks, taken in pk order (two
    # schedulers wait for each other instead of deadlocking). Whoever holds a node's lock reads
    # its reservations after every earlier placement on it committed, so two batches never both
    # take the last free core or gigabyte. Node before GPUs: the lock order of apps.nodes.locks.
    locked_nodes = lock_nodes_for_placement({c.node.pk for _, c in plan})
    fresh = node_resources(locked_nodes)
    capacity.resources.update(fresh)
    free: dict[uuid.UUID, list[tuple[int, int, str, int]]] = defaultdict(list)
    uuids: dict[int, str] = {}
    gpu_nodes = {c.node.pk for pod, c in plan if pod.gpu_count}
    if gpu_nodes:
        for gpu_id, node_id, index, model, memory, gpu_uuid in (
            Gpu.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(node_id__in=gpu_nodes, node__status=NodeStatus.ONLINE, allocation__isnull=True)
            .order_by("node_id", "index")
            .values_list("id", "node_id", "index", "model", "memory_total_mb", "uuid")
        ):
            free[node_id].append((gpu_id, index, model, memory))
            uuids[gpu_id] = gpu_uuid
        # The lock query judged `allocation IS NULL` by its own snapshot, and Postgres
        # re-checks a locked row only when that row itself changed: a GPU that another
        # scheduler claimed and committed while this query ran looks free. With the rows
        # locked now, a fresh statement sees every committed claim.
        locked = [g[0] for rows in free.values() for g in rows]
        taken = set(
            GpuAllocation.objects.filter(gpu_id__in=locked).values_list("gpu_id", flat=True)
        )
        if taken:
            for node_id, rows in free.items():
                free[node_id] = [g for g in rows if g[0] not in taken]
    keys = ssh_keys_by_owner(p.owner_id for p, _ in plan)
    allocations: list[GpuAllocation] = []
    events: list[PodEvent] = []
    placed_pods: list[Pod] = []
    starts: list[tuple[Node, uuid.UUID, dict[str, object]]] = []
    for pod, candidate in plan:
        on_node = fresh.get(candidate.node.pk)
        if on_node is None:
            outcome.contended.add(pod.pk)  # the node left ONLINE meanwhile: try another
            continue
        needs = on_node.needs(pod)
        if on_node.shortfall(needs):
            outcome.contended.add(pod.pk)  # fuller than the view said: try with a fresh view
            continue
        chosen = _take_gpus(free[candidate.node.pk], pod) if pod.gpu_count else []
        if chosen is None:
            candidate.free = 0  # fuller than the view said: someone else got there first
            outcome.contended.add(pod.pk)
            continue
        on_node.take(needs)
        pod.cpu_millicores = needs.cpu_millicores
        pod.memory_mb = needs.memory_mb
        pod.shm_mb = pod.shm_request_mb or needs.shm_default_mb
        reason = (
            f"placed on {candidate.node.hostname}: {pod.gpu_count}× {pod.gpu_model} "
            f"at ${micros_to_usd(candidate.price)}/GPU-h, {needs.cpu_millicores / 1000:g} vCPU, "
            f"{needs.memory_mb} MB RAM"
        )
        allocations += [GpuAllocation(gpu_id=g[0], pod=pod) for g in chosen]
        events.append(pod_transition_event(pod=pod, to=PodStatus.SCHEDULED, reason=reason))
        pod.node = candidate.node
        pod.gpu_indices = [g[1] for g in chosen]
        pod.price_per_gpu_hour = candidate.price
        placed_pods.append(pod)
        starts.append(
            (
                candidate.node,
                pod.pk,
                start_spec(
                    pod,
                    gpu_uuids=[uuids[g[0]] for g in chosen],
                    ssh_keys=keys.get(pod.owner_id, []),
                    needs=needs,
                ),
            )
        )
    GpuAllocation.objects.bulk_create(allocations)
    PodEvent.objects.bulk_create(events)
    Pod.objects.bulk_update(
        placed_pods,
        [
            "status",
            "status_reason",
            "node",
            "gpu_indices",
            "price_per_gpu_hour",
            "cpu_millicores",
            "memory_mb",
            "shm_mb",
        ],
    )
    node_services.workloads_start(starts=starts)
    outcome.placed = {p.pk for p in placed_pods}
    return outcome


def own_cloud_pods(pods: list[Pod]) -> list[Pod]:
    """The pods our own nodes may take: not `cloud: upstream`, and not spot pods (spot
    capacity is an upstream cloud's bid market; our nodes are never interruptible)."""
    return [p for p in pods if p.cloud != PodCloud.UPSTREAM and not p.interruptible]


def lock_nodes_for_placement(node_ids: set[uuid.UUID]) -> list[Node]:
    """Lock the ONLINE nodes among `node_ids` in pk order (a placement on a node waits for the
    other placements on it to commit, so it reads their reservations)."""
    return list(
        Node.objects.select_for_update(of=("self",))
        .filter(pk__in=node_ids, status=NodeStatus.ONLINE)
        .order_by("pk")
    )


def start_spec(
    pod: Pod,
    *,
    gpu_uuids: list[str] | None = None,
    ssh_keys: list[str] | None = None,
    needs: Needs | None = None,
) -> dict[str, object]:
    """The start_pod payload of docs/agent-protocol.md (without pod_id): what the pod runs and
    the limits the agent enforces, which are what was reserved for it on the node (a platform
    default is reserved only: `needs` says which)."""
    limit_cpu = needs is None or needs.limit_cpu
    limit_memory = needs is None or needs.limit_memory
    env = dict(pod.env)
    keys = ssh_keys if ssh_keys is not None else ssh_public_keys(owner_id=pod.owner_id)
    if keys and "PUBLIC_KEY" not in env:
        env["PUBLIC_KEY"] = "\n".join(keys)
    volumes = []
    if pod.volume_id is not None:
        volume = pod.volume
        volumes.append(
            {
                "name": volume.docker_name,  # type: ignore[union-attr]
                "mount_path": pod.volume_mount_path or settings.VOLUME_DEFAULT_MOUNT_PATH,
                "size_gb": volume.size_gb,  # type: ignore[union-attr]
            }
        )
    return {
        "image": pod.image,
        "command": pod.command,
        "env": env,
        "ports": [
            {
                "container_port": p["container_port"],
                "protocol": p.get("protocol", "tcp"),
                "host_port": None,
            }
            for p in pod.ports
        ],
        "gpu_indices": pod.gpu_indices,
        "gpu_uuids": list(gpu_uuids or []),
        "cpu_limit": pod.cpu_millicores / 1000 if pod.cpu_millicores and limit_cpu else None,
        "memory_limit_mb": pod.memory_mb if pod.memory_mb and limit_memory else None,
        "shm_size_mb": pod.shm_mb or None,
        "disk_limit_gb": pod.disk_gb,
        "volumes": volumes,
        "authorized_keys": keys,
        "restart_policy": "unless-stopped" if pod.restartable else "no",
        "network_mode": None,
    }


def unplaceable_reason(pod: Pod, capacity: CapacityView | None = None) -> str:
    """Why `pod` still waits, in words its owner can act on."""
    if pod.node_id is not None:
        return _pinned_reason(pod, capacity)
    cap = (
        f" at or under ${micros_to_usd(pod.price_cap_per_gpu_hour)}/GPU-h"
        if pod.price_cap_per_gpu_hour is not None
        else ""
    )
    vram = f" with ≥ {pod.min_vram_mb} MiB" if pod.min_vram_mb else ""
    if pod.gpu_count == 0:
        return (
            f"Waiting for capacity: no online node has the CPU and memory free for this pod{cap}."
        )
    reason = (
        f"Waiting for capacity: no online node has {pod.gpu_count} free {pod.gpu_model} "
        f"GPU(s){vram}{cap}"
    )
    if capacity is not None and any(
        c.model == pod.gpu_model and c.free >= pod.gpu_count and c.memory_mb >= pod.min_vram_mb
        for c in capacity.entries
    ):
        reason += " together with the CPU, memory and disk this pod needs"
    return reason + "."


def _pinned_reason(pod: Pod, capacity: CapacityView | None) -> str:
    """A pod tied to one node (its volume lives there, or it resumes where it ran) waits for
    that node alone."""
    node = pod.node
    why = "its volume is there" if pod.volume_id else "it resumes where it ran"
    if node is None:
        return "Waiting for its node."
    if node.status != NodeStatus.ONLINE:
        return f"Waiting for node {node.hostname} ({why}): the node is {node.status}."
    free = 0
    if capacity is not None:
        free = sum(
            c.free
            for c in capacity.entries
            if c.node.pk == node.pk and c.model == pod.gpu_model and c.memory_mb >= pod.min_vram_mb
        )
    if pod.gpu_count and free < pod.gpu_count:
        return (
            f"Waiting for node {node.hostname} ({why}): {free} of the {pod.gpu_count} "
            f"{pod.gpu_model} GPU(s) it needs are free."
        )
    resources = capacity.resources.get(node.pk) if capacity is not None else None
    short = resources.shortfall(resources.needs(pod)) if resources is not None else ""
    if short:
        return f"Waiting for node {node.hostname} ({why}): it lacks {short}."
    if pod.price_cap_per_gpu_hour is not None:
        return (
            f"Waiting for node {node.hostname} ({why}): its price is above the pod's cap of "
            f"${micros_to_usd(pod.price_cap_per_gpu_hour)}/GPU-h."
        )
    return f"Waiting for node {node.hostname} ({why})."


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


# How many times one pass looks again at the pods it could not place because another
# scheduler held the GPU rows it wanted (the holder may have used only some of them).
MAX_CONTENDED_ROUNDS = 20


def schedule_pending(
    *, limit: int = 1000, pod_ids: list[uuid.UUID] | None = None, batch: int = 100
) -> PassResult:
    """One scheduling pass over up to `limit` PENDING pods, oldest first, `batch` pods per
    transaction. Each batch is locked with SKIP LOCKED, so schedulers running at once take
    disjoint batches instead of racing for the same pods.

    A batch locks every free GPU row of the nodes it plans onto, and another scheduler skips
    those rows, so a pass that lost such a race may leave pods PENDING that GPUs the winner
    did not need would fit. A pass that saw any contention therefore goes over the pods it
    left unplaced once more, with a fresh capacity view, until a round sees none: no pod waits
    for a next pass while a GPU it fits is free."""
    result = PassResult()
    sources = _sources(tuple(settings.POD_CAPACITY_SOURCES))
    seen: set[uuid.UUID] = set()
    unplaced: set[uuid.UUID] = set()
    for _ in range(MAX_CONTENDED_ROUNDS):
        contended = _schedule_round(
            result,
            sources,
            seen=seen,
            unplaced=unplaced,
            limit=limit,
            pod_ids=pod_ids,
            batch=batch,
        )
        if not contended or not unplaced:
            break
        seen -= unplaced  # look at every pod left unplaced again, with a fresh view
    result.waiting = len(unplaced)
    metrics.PLACEMENTS.inc(result.placed)
    return result


def _schedule_round(
    result: PassResult,
    sources: tuple[CapacitySource, ...],
    *,
    seen: set[uuid.UUID],
    unplaced: set[uuid.UUID],
    limit: int,
    pod_ids: list[uuid.UUID] | None,
    batch: int,
) -> bool:
    """Place the PENDING pods not in `seen`, batch by batch. Adds placements to `result`,
    keeps `unplaced` current, and says whether any claim lost a race for GPU rows."""
    capacity: CapacityView | None = None
    contended = False
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
                pending.select_for_update(skip_locked=True, of=("self",))
                .select_related("node")
                .order_by("created_at")[: min(batch, limit - len(seen))]
            )
            if not pods:
                break
            seen.update(p.pk for p in pods)
            capacity = capacity or CapacityView.load()
            remaining = pods
            for source in sources:
                # A pod pinned to one of our nodes (its volume is there, or it resumes there)
                # is for that node alone: no other source may rent a machine for it.
                offered = (
                    remaining
                    if source is community_nodes
                    else [p for p in remaining if p.node_id is None]
                )
                if not offered:
                    break
                outcome = source(offered, capacity)
                result.placed += len(outcome.placed)
                contended = contended or bool(outcome.contended)
                remaining = [p for p in remaining if p.pk not in outcome.placed]
            unplaced.difference_update(p.pk for p in pods)
            unplaced.update(p.pk for p in remaining)
            for pod in remaining:
                reason = unplaceable_reason(pod, capacity)
                if pod.status_reason != reason:
                    Pod.objects.filter(pk=pod.pk).update(status_reason=reason)
    return contended


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
