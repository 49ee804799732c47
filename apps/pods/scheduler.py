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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils.module_loading import import_string

from apps.core import metrics, request_context
from apps.core.gpu_models import CANONICAL, CPU_MODEL
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.capacity import CapacityView, NodeCapacity, unplaceable_reason
from apps.pods.claims import (
    BatchOutcome,
    community_nodes,
    lock_nodes_for_placement,
    own_cloud_pods,
    start_spec,
)
from apps.pods.models import Pod, PodStatus

logger = logging.getLogger(__name__)

__all__ = [
    "BatchOutcome",
    "CapacitySource",
    "CapacityView",
    "NodeCapacity",
    "PassResult",
    "community_nodes",
    "known_gpu_models",
    "lock_nodes_for_placement",
    "lowest_price",
    "own_cloud_pods",
    "schedule_pending",
    "start_spec",
    "unplaceable_reason",
]


@dataclass
class PassResult:
    placed: int = 0
    waiting: int = 0
    # A full pass that found SCHEDULER_MAX_PASSES others running and left the queue to them.
    stood_aside: bool = False


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
    with _scheduler_slot(full=pod_ids is None) as slot:
        if slot == STAND_ASIDE:
            result.stood_aside = True
            return result
        for _ in range(MAX_CONTENDED_ROUNDS):
            contended = _schedule_round(
                result,
                sources,
                seen=seen,
                unplaced=unplaced,
                limit=limit,
                pod_ids=pod_ids,
                batch=batch,
                slot=slot,
            )
            if not contended or not unplaced:
                break
            seen -= unplaced  # look at every pod left unplaced again, with a fresh view
    result.waiting = len(unplaced)
    metrics.PLACEMENTS.inc(result.placed)
    return result


# Advisory lock class of the scheduler slots: (class, slot) for slot in 0..MAX_SLOTS - 1.
SLOT_LOCK_CLASS = 0x5C4ED
MAX_SLOTS = 16
STAND_ASIDE = -1


@contextmanager
def _scheduler_slot(*, full: bool = False) -> Iterator[int | None]:
    """Hold the first free scheduler slot (a session advisory lock) for the pass; yields its
    number, or None off Postgres or when every slot is taken. Slots steer concurrent passes
    towards different nodes (`CapacityView.slot`); correctness rests on the claims' row locks,
    not on them.

    A full pass (over the whole queue, as the periodic task runs it) takes one of the first
    SCHEDULER_MAX_PASSES slots or yields STAND_ASIDE: the passes running already drain the
    queue, and passes beyond what the database's cores can serve at once only contend for the
    same locks and CPU, so more worker processes would place fewer pods per second. A pass for
    given pods (a pod just created or resumed) never stands aside."""
    if connection.vendor != "postgresql":
        yield None
        return
    held = None
    slots = range(min(settings.SCHEDULER_MAX_PASSES, MAX_SLOTS) if full else MAX_SLOTS)
    with connection.cursor() as cursor:
        for slot in slots:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SLOT_LOCK_CLASS, slot])
            if cursor.fetchone()[0]:
                held = slot
                break
    if held is None and full:
        yield STAND_ASIDE
        return
    try:
        yield held
    finally:
        if held is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SLOT_LOCK_CLASS, held])


def _slot_view(capacity: CapacityView, slot: int | None) -> None:
    """Tell the view which share of the nodes to prefer: this pass's rank among the slots
    held right now, of how many (one query a round; one scheduler alone prefers none)."""
    if slot is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objsubid = 2 AND granted ORDER BY objid",
            [SLOT_LOCK_CLASS],
        )
        held = [int(row[0]) for row in cursor.fetchall()]
    if slot in held:
        capacity.slots, capacity.slot = len(held), held.index(slot)


def _schedule_round(
    result: PassResult,
    sources: tuple[CapacitySource, ...],
    *,
    seen: set[uuid.UUID],
    unplaced: set[uuid.UUID],
    limit: int,
    pod_ids: list[uuid.UUID] | None,
    batch: int,
    slot: int | None = None,
) -> bool:
    """Place the PENDING pods not in `seen`, batch by batch. Adds placements to `result`,
    keeps `unplaced` current, and says whether any claim lost a race for GPU rows."""
    capacity: CapacityView | None = None
    contended = False
    while len(seen) < limit:
        placed: list[Pod] = []
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
            if capacity is None:
                capacity = CapacityView.load()
                _slot_view(capacity, slot)
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
                placed += [p for p in offered if p.pk in outcome.placed]
                result.placed += len(outcome.placed)
                contended = contended or bool(outcome.contended)
                remaining = [p for p in remaining if p.pk not in outcome.placed]
            unplaced.difference_update(p.pk for p in pods)
            unplaced.update(p.pk for p in remaining)
            for pod in remaining:
                reason = unplaceable_reason(pod, capacity)
                if pod.status_reason != reason:
                    Pod.objects.filter(pk=pod.pk).update(status_reason=reason)
        _log_placed(placed)  # once the batch's transaction is done
    return contended


def _log_placed(pods: list[Pod]) -> None:
    """One line per placement, under the id of the request that asked for the pod (not the
    pass's own): an operator follows a pod start from its API call through this pass, which may
    run in a Celery worker long after, to the agent's lines for its start_pod command."""
    if not pods or not logger.isEnabledFor(logging.INFO):
        return
    for pod in pods:
        logger.info(
            "pod %s %s: %s",
            pod.pk,
            pod.status,
            pod.status_reason,
            extra={
                "request_id": pod.request_id or request_context.current(),
                "pod_id": str(pod.pk),
                "pod_status": pod.status,
            },
        )


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
