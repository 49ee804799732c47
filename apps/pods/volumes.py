"""Volumes: create on a node (the agent makes the Docker volume), attach to pods, measure,
enforce the size, delete on their own DELETE only.

The size is a quota the storage driver cannot enforce (overlay2 on ext4 has no project quotas),
so it is measured: the agent reports each volume's usage every so often, and a volume found
over its size stops the pods that write to it, with an event saying why. The same holds for a
pod's own writable layer against its `disk_gb`."""

import logging
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.nodes import services as node_services
from apps.nodes.locks import lock_node
from apps.nodes.models import CommandStatus, CommandType, Gpu, Node, NodeCommand, NodeStatus
from apps.pods.locks import lock_volume
from apps.pods.models import (
    ACTIVE_STATUSES,
    LIVE_VOLUME_STATUSES,
    Pod,
    PodStatus,
    Volume,
    VolumeStatus,
)
from apps.pods.resources import node_resources

logger = logging.getLogger(__name__)

GB = 1024**3
# Pods that hold on to a volume: running or about to, and stopped ones that may resume.
HOLDING_STATUSES = (*ACTIVE_STATUSES, PodStatus.STOPPED)


class VolumeInputError(ValueError):
    """Bad input for a volume or an attachment; `field` names what is wrong (a 400)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class VolumeInUseError(Exception):
    """The volume is attached to a pod (a 409)."""


def mount_path_problem(path: str) -> str:
    """Why `path` cannot be a mount path ("" when it can): absolute, normalised, not / itself."""
    if not path.startswith("/"):
        return "Must be an absolute path inside the container, e.g. /workspace."
    if path == "/" or posixpath.normpath(path) != path or "//" in path:
        return "Must be a normalised absolute path below / (no '..', '.', '//' or trailing /)."
    if len(path) > 255 or any(c in path for c in "\n\r\t:,\\"):
        return "Must be at most 255 characters, without ':', ',', '\\' or control characters."
    return ""


def _free_disk(nodes: list[Node]) -> dict[uuid.UUID, int | None]:
    return {pk: r.free_disk for pk, r in node_resources(nodes).items()}


def _choose_node(*, size_gb: int, gpu_model: str) -> Node:
    nodes = Node.objects.schedulable()
    if gpu_model:
        nodes = nodes.filter(gpus__model=gpu_model).distinct()
    candidates = list(nodes)
    if not candidates:
        where = f" with {gpu_model} GPUs" if gpu_model else ""
        raise VolumeInputError("node", f"No online node{where} can take a volume now.")
    free = _free_disk(candidates)
    # Unlimited (unreported) disk counts as roomy, but a node that reported comes first.
    fitting = [n for n in candidates if (f := free[n.pk]) is None or f >= size_gb]
    if not fitting:
        most = max(f for f in free.values() if f is not None)
        raise VolumeInputError(
            "size_gb", f"No node can hold {size_gb} GB: the most free on any node is {most} GB."
        )
    return max(fitting, key=lambda n: (free[n.pk] is not None, free[n.pk] or 0))


def volume_create(
    *, owner: User, name: str, size_gb: int, node: Node | None = None, gpu_model: str = ""
) -> Volume:
    """Create a volume on `node` (or on the online node with the most free disk, having
    `gpu_model` GPUs when given) and ask its agent to make it. The node's disk is claimed
    under its row lock, as the scheduler claims it for pods."""
    if node is None:
        node = _choose_node(size_gb=size_gb, gpu_model=gpu_model)
    with transaction.atomic():
        locked = lock_node(node.pk)
        if locked.status != NodeStatus.ONLINE:
            raise VolumeInputError("node", f"Node {locked.hostname} is {locked.status}.")
        free = _free_disk([locked])[locked.pk]
        if free is not None and size_gb > free:
            raise VolumeInputError(
                "size_gb", f"Node {locked.hostname} has {max(free, 0)} GB free, not {size_gb} GB."
            )
        volume = Volume.objects.create(
            owner=owner,
            name=name,
            size_gb=size_gb,
            node=locked,
            price_per_gb_month=settings.VOLUME_PRICE_PER_GB_MONTH,
            created_at=timezone.now(),
            status_reason=f"being created on {locked.hostname}",
        )
        node_services.command_enqueue(
            node=locked,
            type=CommandType.CREATE_VOLUME,
            payload={"volume_id": str(volume.pk), "name": volume.docker_name, "size_gb": size_gb},
        )
    return volume


def holders(volume: Volume) -> list[Pod]:
    return list(Pod.objects.filter(volume=volume, status__in=HOLDING_STATUSES))


@transaction.atomic
def volume_delete(*, volume: Volume) -> Volume:
    """DELETE: refused while a pod (running, waiting or stopped) uses it; else billing ends now
    and the agent removes the Docker volume."""
    locked = lock_volume(volume.pk)
    if locked is None or locked.status in (VolumeStatus.DELETING, VolumeStatus.DELETED):
        return locked or volume
    using = holders(locked)
    if using:
        names = ", ".join(f"{p.name} ({p.status})" for p in using)
        raise VolumeInUseError(
            f"Volume {locked.name} is attached to pod(s) {names}: terminate them first."
        )
    now = timezone.now()
    if locked.status == VolumeStatus.FAILED:
        locked.status = VolumeStatus.DELETED
        locked.deleted_at = locked.deleted_at or now
        locked.save(update_fields=["status", "deleted_at"])
        return locked
    locked.status = VolumeStatus.DELETING
    locked.status_reason = "deleted by its owner"
    locked.deleted_at = now
    locked.save(update_fields=["status", "status_reason", "deleted_at"])
    node_services.command_enqueue(
        node=locked.node,
        type=CommandType.DELETE_VOLUME,
        payload={"volume_id": str(locked.pk), "name": locked.docker_name},
    )
    return locked


def lock_for_attach(
    *, volume: Volume, pod_spec: dict[str, Any], resuming: Pod | None = None
) -> Volume:
    """Check, under the volume's lock, that a pod may mount it (the caller's transaction then
    creates or resumes the pod): it is usable, free, and its node can host the pod."""
    locked = lock_volume(volume.pk)
    if locked is None or locked.status not in (VolumeStatus.CREATING, VolumeStatus.READY):
        status = locked.status if locked else "gone"
        raise VolumeInputError("volume", f"Volume {volume.name} is {status}.")
    using = [p for p in holders(locked) if resuming is None or p.pk != resuming.pk]
    if using:
        raise VolumeInputError(
            "volume",
            f"Volume {locked.name} is attached to pod {using[0].name} ({using[0].status}); "
            "a volume mounts in one pod at a time.",
        )
    node = locked.node
    gpu_count = pod_spec.get("gpu_count") or 0
    if gpu_count:
        model = pod_spec.get("gpu_model", "")
        on_node = Gpu.objects.filter(node=node, model=model).count()
        if on_node < gpu_count:
            raise VolumeInputError(
                "volume",
                f"Volume {locked.name} is on node {node.hostname}, which has {on_node} "
                f"{model} GPU(s), not {gpu_count}: the pod must run where its volume is.",
            )
    if node.status == NodeStatus.RETIRED:
        raise VolumeInputError("volume", f"Volume {locked.name} is on a retired node.")
    return locked


@transaction.atomic
def volume_observe_command(*, command: NodeCommand) -> None:
    """The agent made (or removed) a volume, or could not."""
    if command.type not in (CommandType.CREATE_VOLUME, CommandType.DELETE_VOLUME):
        return
    volume = lock_volume(command.payload.get("volume_id", ""))
    if volume is None or volume.node_id != command.node_id:
        return
    ok = command.status == CommandStatus.ACKED
    if command.type == CommandType.CREATE_VOLUME and volume.status == VolumeStatus.CREATING:
        if ok:
            volume.status = VolumeStatus.READY
            volume.status_reason = f"ready on {volume.node.hostname}"
        else:
            volume.status = VolumeStatus.FAILED
            volume.status_reason = f"the node could not create it: {command.error}"[:500]
            volume.deleted_at = volume.created_at  # it never existed: nothing to bill
        volume.save(update_fields=["status", "status_reason", "deleted_at"])
    elif command.type == CommandType.DELETE_VOLUME and volume.status == VolumeStatus.DELETING:
        if ok:
            volume.status = VolumeStatus.DELETED
            volume.status_reason = "deleted"
        else:
            volume.status_reason = f"the node could not remove it: {command.error}"[:500]
        volume.save(update_fields=["status", "status_reason"])


@dataclass(frozen=True)
class OverQuota:
    volume_id: uuid.UUID
    name: str
    size_gb: int
    used_bytes: int

    @property
    def reason(self) -> str:
        return (
            f"volume {self.name} holds {self.used_bytes / GB:.2f} GB, over its {self.size_gb} GB "
            "size: the pod was stopped (free space or use a bigger volume)"
        )


def volumes_record_usage(
    *, node: Node, volumes: list[dict[str, Any]], at: datetime
) -> list[OverQuota]:
    """Store what the agent measured of `node`'s volumes; returns those over their size (the
    caller stops the pods writing to them)."""
    by_name = {
        v.docker_name: v for v in Volume.objects.filter(node=node, status__in=LIVE_VOLUME_STATUSES)
    }
    over: list[OverQuota] = []
    for report in volumes:
        volume = by_name.get(str(report.get("name")))
        if volume is None:
            continue
        used = int(report["used_bytes"])
        fields: dict[str, Any] = {"used_bytes": used, "measured_at": at}
        if used > volume.size_gb * GB:
            over.append(OverQuota(volume.pk, volume.name, volume.size_gb, used))
            fields["status_reason"] = f"over quota: {used / GB:.2f} of {volume.size_gb} GB used"
        Volume.objects.filter(pk=volume.pk).update(**fields)
    return over
