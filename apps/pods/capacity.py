"""What a scheduling pass knows of free capacity (DESIGN.md §6): free GPUs per (node, model)
and free CPU/RAM/disk per node, the candidate nodes for a pod in its strategy's order, and why
a pod that fits nowhere still waits."""

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from apps.core.gpu_models import CPU_MODEL
from apps.core.money import micros_to_usd
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.nodes.selectors import gpu_price_per_hour
from apps.pods.models import Pod, PodStrategy
from apps.pods.reliability import host_reliability
from apps.pods.resources import Needs, NodeResources, node_resources
from apps.pods.strategy import balanced_score


@dataclass
class NodeCapacity:
    node: Node
    model: str
    memory_mb: int
    free: int
    price: int  # per GPU-hour, micro-dollars
    reliability: float = 1.0  # apps.pods.reliability, filled in when a strategy needs it


class _NodeClass:
    """Nodes of one model that a placement cannot tell apart by anything but their free GPUs
    and CPU/RAM/disk: the same VRAM, price, measured reliability and scheduler slot. They rank
    the same under every strategy, and among them best fit takes the fullest that fits, so a
    placement looks at one member per class (found through its free-GPU buckets) instead of
    at every node."""

    __slots__ = ("buckets", "memory_mb", "price")

    def __init__(self, memory_mb: int, price: int) -> None:
        self.memory_mb = memory_mb
        self.price = price
        self.buckets: dict[int, dict[uuid.UUID, NodeCapacity]] = {}

    def add(self, entry: NodeCapacity) -> None:
        if entry.free > 0:
            self.buckets.setdefault(entry.free, {})[entry.node.pk] = entry

    def remove(self, entry: NodeCapacity) -> None:
        bucket = self.buckets.get(entry.free)
        if bucket is not None:
            bucket.pop(entry.node.pk, None)
            if not bucket:
                del self.buckets[entry.free]

    def fullest_fit(
        self, count: int, fits: "Callable[[NodeCapacity], bool]"
    ) -> NodeCapacity | None:
        for free in sorted(f for f in self.buckets if f >= count):
            for entry in self.buckets[free].values():
                if fits(entry):
                    return entry
        return None


@dataclass
class CapacityView:
    """Free GPUs per (node, model) and free CPU/RAM/disk per node, read once per scheduling
    pass and kept current as the pass places pods, so a pass costs one read plus a claim per
    pod. Placement re-checks CPU/RAM/disk under the node's lock (`community_nodes`)."""

    entries: list[NodeCapacity] = field(default_factory=list)
    resources: dict[uuid.UUID, NodeResources] = field(default_factory=dict)
    _cpu_nodes: list[NodeCapacity] | None = None
    _scored: bool = False
    # Several schedulers at once: this one is `slot` of `slots` (apps.pods.scheduler) and
    # prefers, among equally good nodes, the nodes of its own slot, so concurrent passes claim
    # disjoint nodes instead of queueing on the same node locks. One scheduler: no preference.
    slot: int = 0
    slots: int = 1
    # The classes of equivalent nodes per model, built on the first placement of a pass (and
    # again if the slot changes); kept current through `set_free`.
    _classes: dict[str, list[_NodeClass]] | None = None
    _class_of: dict[int, _NodeClass] = field(default_factory=dict)
    _classes_slot: tuple[int, int] = (0, 1)

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

    def set_free(self, entry: NodeCapacity, free: int) -> None:
        """Change an entry's free GPU count (a placement planned on it, or it turned out
        fuller than read), keeping the classes' buckets current."""
        node_class = self._class_of.get(id(entry)) if self._classes is not None else None
        if node_class is not None:
            node_class.remove(entry)
        entry.free = free
        if node_class is not None:
            node_class.add(entry)

    def _node_classes(self) -> dict[str, list[_NodeClass]]:
        if self._classes is not None and self._classes_slot == (self.slot, self.slots):
            return self._classes
        self._score()
        by_key: dict[tuple[Any, ...], _NodeClass] = {}
        classes: dict[str, list[_NodeClass]] = {}
        self._class_of = {}
        for c in self.entries:
            other = self.slots > 1 and c.node.pk.int % self.slots != self.slot
            key = (c.model, c.memory_mb, c.price, c.reliability, other)
            node_class = by_key.get(key)
            if node_class is None:
                node_class = by_key[key] = _NodeClass(c.memory_mb, c.price)
                classes.setdefault(c.model, []).append(node_class)
            node_class.add(c)
            self._class_of[id(c)] = node_class
        self._classes, self._classes_slot = classes, (self.slot, self.slots)
        return classes

    def _best_placement(self, pod: Pod) -> list[NodeCapacity]:
        """`candidates(pod, first=True)` for a GPU pod that may go anywhere: the fullest
        fitting node of each class of equivalent nodes, then the strategy's pick among those
        (the same node a ranking of every fitting node would pick, up to the tie-break)."""
        needs: dict[tuple[int | None, int | None], Needs] = {}
        resources_of = self.resources

        def fits(c: NodeCapacity) -> bool:
            resources = resources_of.get(c.node.pk)
            if resources is None:
                return False
            share = (resources.cpu_per_gpu, resources.ram_per_gpu)
            need = needs.get(share)
            if need is None:
                need = needs[share] = resources.needs(pod)
            free_cpu, free_memory, free_disk = (
                resources.free_cpu,
                resources.free_memory,
                resources.free_disk,
            )
            return (
                (free_cpu is None or need.cpu_millicores <= free_cpu)
                and (free_memory is None or need.memory_mb <= free_memory)
                and (free_disk is None or need.disk_gb <= free_disk)
            )

        count, vram, cap = pod.gpu_count, pod.min_vram_mb, pod.price_cap_per_gpu_hour
        best = []
        for node_class in self._node_classes().get(pod.gpu_model, ()):
            if node_class.memory_mb < vram or (cap is not None and node_class.price > cap):
                continue
            entry = node_class.fullest_fit(count, fits)
            if entry is not None:
                best.append(entry)
        return self.ranked(best, pod.strategy, first=True)

    def fits(self, pod: Pod, node_id: uuid.UUID) -> bool:
        resources = self.resources.get(node_id)
        return resources is not None and not resources.shortfall(resources.needs(pod))

    def candidates(self, pod: Pod, *, first: bool = False) -> list[NodeCapacity]:
        """The nodes `pod` fits on now, best first (with `first`: the best one only)."""
        if pod.gpu_count == 0:
            return self._cpu_candidates(pod)[: 1 if first else None]
        if first and pod.node_id is None:
            return self._best_placement(pod)
        # What the pod takes of a node depends only on the node's per-GPU share: worked out
        # once per share, not once per node (this loop runs for every node, for every pod).
        needs: dict[tuple[int | None, int | None], Needs] = {}
        model, count, vram = pod.gpu_model, pod.gpu_count, pod.min_vram_mb
        cap, pinned = pod.price_cap_per_gpu_hour, pod.node_id
        fits = []
        for c in self.entries:
            if (
                c.model != model
                or c.free < count
                or c.memory_mb < vram
                or (cap is not None and c.price > cap)
            ):
                continue
            node_id = c.node.pk
            if pinned is not None and node_id != pinned:  # pinned: resume, volume
                continue
            resources = self.resources.get(node_id)
            if resources is None:
                continue
            share = (resources.cpu_per_gpu, resources.ram_per_gpu)
            need = needs.get(share)
            if need is None:
                need = needs[share] = resources.needs(pod)
            # NodeResources.shortfall's test, without building its message for every node.
            free_cpu, free_memory, free_disk = (
                resources.free_cpu,
                resources.free_memory,
                resources.free_disk,
            )
            if (
                (free_cpu is None or need.cpu_millicores <= free_cpu)
                and (free_memory is None or need.memory_mb <= free_memory)
                and (free_disk is None or need.disk_gb <= free_disk)
            ):
                fits.append(c)
        # In strategy order (cheapest first for LOWEST_PRICE); among equals the fullest node
        # that still fits (best fit keeps big nodes whole for big pods); a random tie-break
        # spreads concurrent schedulers.
        return self.ranked(fits, pod.strategy, first=first)

    def ranked(
        self, fits: list[NodeCapacity], strategy: str, *, first: bool = False
    ) -> list[NodeCapacity]:
        """`fits` in `strategy` order; with `first`, only the best of them (one pass, no sort:
        a placement needs no more, and this runs for every pod against every node)."""
        slots, slot = self.slots, self.slot

        def order(items: list[NodeCapacity], key: Any) -> list[NodeCapacity]:
            return [min(items, key=key)] if first and items else sorted(items, key=key)

        def tail(c: NodeCapacity) -> tuple[float, ...]:
            other = slots > 1 and c.node.pk.int % slots != slot
            return (other, c.free, random.random())  # noqa: S311 - a tie-break, not crypto

        if strategy == PodStrategy.LOWEST_PRICE or not fits:
            return order(fits, lambda c: (c.price, *tail(c)))
        if strategy == PodStrategy.BEST_VALUE:
            return order(fits, lambda c: (c.price / max(c.memory_mb, 1), c.price, *tail(c)))
        self._score()
        if strategy == PodStrategy.HIGHEST_RELIABILITY:
            return order(fits, lambda c: (-c.reliability, c.price, *tail(c)))
        cheapest = min(c.price for c in fits)
        best_value = min(c.price / max(c.memory_mb / 1024, 1) for c in fits)
        return order(
            fits,
            lambda c: (
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
