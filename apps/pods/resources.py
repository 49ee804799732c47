"""CPU, memory and disk of a node, and what a pod takes of them.

Each GPU of a node brings a share of the node's CPU and RAM: the operator's setting on the node
(`cpu_per_gpu_millicores`, `ram_per_gpu_mb`), or else the node's totals divided by its GPU
count. A pod gets its GPUs' share unless it asks for an amount of its own, which is granted
when the node has that much free. CPU-only pods (and nodes whose GPUs bring no share) get the
platform defaults, which are reserved but not enforced as limits (they are a guess, not an
ask). Disk is the pod's `disk_gb` plus the node's volumes.

A node that did not report a total (0) is not limited on that resource: nothing is known to
reserve against. Reservations are what ON_NODE pods hold (`Pod.cpu_millicores`, `memory_mb`,
`disk_gb`) plus the live volumes on the node; they are summed under the node's row lock by the
scheduler (apps.pods.scheduler), so two placements never both take the last core."""

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum

from apps.nodes.models import Node
from apps.pods.models import LIVE_VOLUME_STATUSES, ON_NODE_STATUSES, Pod, Volume


@dataclass(frozen=True)
class Needs:
    cpu_millicores: int
    memory_mb: int
    disk_gb: int
    # Enforced in Docker when asked for or a GPU share; a platform default is only reserved
    # (a CPU pod without an ask is not throttled nor OOM-killed at a guessed size).
    limit_cpu: bool = True
    limit_memory: bool = True

    @property
    def shm_default_mb(self) -> int:
        # Half the memory: data loaders and NCCL want far more than Docker's 64 MB default,
        # and shared memory is charged to the same memory limit anyway.
        return max(64, self.memory_mb // 2)


@dataclass
class NodeResources:
    """A node's totals and what is free of them now; None: not limited (not reported)."""

    node_id: uuid.UUID
    gpu_total: int
    cpu_per_gpu: int | None
    ram_per_gpu: int | None
    free_cpu: int | None
    free_memory: int | None
    free_disk: int | None

    def needs(self, pod: Pod) -> Needs:
        """What `pod` takes of this node: its own ask, else its GPUs' share, else defaults."""
        limit_cpu = limit_memory = True
        if pod.cpu_request_millicores:
            cpu = pod.cpu_request_millicores
        elif pod.gpu_count and self.cpu_per_gpu:
            cpu = self.cpu_per_gpu * pod.gpu_count
        else:
            cpu, limit_cpu = settings.POD_DEFAULT_CPU_MILLICORES, False
        if pod.memory_request_mb:
            memory = pod.memory_request_mb
        elif pod.gpu_count and self.ram_per_gpu:
            memory = self.ram_per_gpu * pod.gpu_count
        else:
            memory, limit_memory = settings.POD_DEFAULT_MEMORY_MB, False
        return Needs(
            cpu_millicores=cpu,
            memory_mb=memory,
            disk_gb=pod.disk_gb,
            limit_cpu=limit_cpu,
            limit_memory=limit_memory,
        )

    def shortfall(self, needs: Needs) -> str:
        """Why `needs` does not fit now ("" when it does)."""
        short = []
        if self.free_cpu is not None and needs.cpu_millicores > self.free_cpu:
            short.append(f"{needs.cpu_millicores / 1000:g} vCPU (free {self.free_cpu / 1000:g})")
        if self.free_memory is not None and needs.memory_mb > self.free_memory:
            short.append(f"{needs.memory_mb} MB RAM (free {self.free_memory})")
        if self.free_disk is not None and needs.disk_gb > self.free_disk:
            short.append(f"{needs.disk_gb} GB disk (free {self.free_disk})")
        return ", ".join(short)

    def take(self, needs: Needs) -> None:
        if self.free_cpu is not None:
            self.free_cpu -= needs.cpu_millicores
        if self.free_memory is not None:
            self.free_memory -= needs.memory_mb
        if self.free_disk is not None:
            self.free_disk -= needs.disk_gb


def node_share(node: Node, gpu_total: int) -> tuple[int | None, int | None]:
    """(millicores, MB of RAM) each GPU brings: the operator's setting, else totals / GPUs."""
    cpu = node.cpu_per_gpu_millicores
    ram = node.ram_per_gpu_mb
    if cpu is None and gpu_total and node.cpu_cores:
        cpu = node.cpu_cores * 1000 // gpu_total
    if ram is None and gpu_total and node.ram_total_mb:
        ram = node.ram_total_mb // gpu_total
    return cpu, ram


def disk_capacity_gb(node: Node) -> int | None:
    return math.floor(node.disk_total_gb) if node.disk_total_gb else None


def node_resources(nodes: Iterable[Node]) -> dict[uuid.UUID, NodeResources]:
    """Free CPU, RAM and disk of `nodes`, read now (three grouped queries). Callers that
    place pods read this after locking the nodes, so it includes every committed placement."""
    nodes = list(nodes)
    ids = [n.pk for n in nodes]
    held = {
        row["node_id"]: row
        for row in Pod.objects.filter(node_id__in=ids, status__in=ON_NODE_STATUSES)
        .values("node_id")
        .annotate(cpu=Sum("cpu_millicores"), memory=Sum("memory_mb"), disk=Sum("disk_gb"))
    }
    volumes = dict(
        Volume.objects.filter(node_id__in=ids, status__in=LIVE_VOLUME_STATUSES)
        .values("node_id")
        .annotate(total=Sum("size_gb"))
        .values_list("node_id", "total")
    )
    gpus = dict(Node.objects.filter(pk__in=ids).annotate(n=Count("gpus")).values_list("pk", "n"))
    result = {}
    for node in nodes:
        used: dict[str, Any] = dict(held.get(node.pk) or {})
        gpu_total = gpus.get(node.pk, 0)
        cpu_share, ram_share = node_share(node, gpu_total)
        disk = disk_capacity_gb(node)
        result[node.pk] = NodeResources(
            node_id=node.pk,
            gpu_total=gpu_total,
            cpu_per_gpu=cpu_share,
            ram_per_gpu=ram_share,
            free_cpu=node.cpu_cores * 1000 - (used.get("cpu") or 0) if node.cpu_cores else None,
            free_memory=node.ram_total_mb - (used.get("memory") or 0)
            if node.ram_total_mb
            else None,
            free_disk=disk - (used.get("disk") or 0) - (volumes.get(node.pk) or 0)
            if disk is not None
            else None,
        )
    return result
