"""Writes for pods: create (idempotent), stop, delete, and reacting to what nodes report."""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.spend import spend_refusal
from apps.core import request_context
from apps.nodes import services as node_services
from apps.nodes.models import CommandStatus, CommandType, Node, NodeCommand, Workload, WorkloadState
from apps.pods import metering, upstream, volumes
from apps.pods.lifecycle import FINAL, pod_transition
from apps.pods.locks import lock_pod
from apps.pods.models import ON_NODE_STATUSES, GpuAllocation, Pod, PodStatus
from apps.pods.scheduler import schedule_pending

logger = logging.getLogger(__name__)
# Container states in which the pod's container no longer runs.
CONTAINER_ENDED = (WorkloadState.EXITED, WorkloadState.DEAD, WorkloadState.MISSING)


class SpendRefusedError(Exception):
    """New work is refused: no balance left, monthly cap reached, or at the hourly burn limit."""


class PodNotResumableError(Exception):
    """Only a stopped pod resumes (a 409 saying why)."""


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class CreatedPod:
    pod: Pod
    created: bool  # False: an earlier request with the same Idempotency-Key


def _request_hash(spec: dict[str, Any]) -> str:
    plain = {k: getattr(v, "pk", v) for k, v in spec.items()}  # a volume or template: its id
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def pod_create(*, owner: User, spec: dict[str, Any], idempotency_key: str = "") -> CreatedPod:
    """Create a PENDING pod and try to place it at once (a periodic pass retries the rest).
    Same key and body → the same pod; same key, other body → IdempotencyConflictError."""
    digest = _request_hash(spec)
    if idempotency_key:
        existing = Pod.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.request_hash != digest:
                raise IdempotencyConflictError(idempotency_key)
            return CreatedPod(pod=existing, created=False)
    _check_spend(owner_id=owner.pk)
    try:
        with transaction.atomic():
            volume = spec.get("volume")
            if volume is not None:
                # Under the volume's lock: one pod at a time, on the volume's node (the pod is
                # pinned there: `node` on a PENDING pod restricts the scheduler to it).
                volume = volumes.lock_for_attach(volume=volume, pod_spec=spec)
                spec = {**spec, "volume": volume, "node": volume.node}
            pod = Pod.objects.create(
                owner=owner,
                idempotency_key=idempotency_key,
                request_hash=digest,
                request_id=request_context.current() or "",
                **spec,
            )
            pod.events.create(
                from_status=PodStatus.PENDING, to_status=PodStatus.PENDING, reason="created"
            )
    except IntegrityError:
        # A concurrent request with the same key won the unique constraint.
        if idempotency_key:
            existing = Pod.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
            if existing is not None:
                if existing.request_hash != digest:
                    raise IdempotencyConflictError(idempotency_key) from None
                return CreatedPod(pod=existing, created=False)
        raise
    schedule_pending(pod_ids=[pod.pk])
    pod.refresh_from_db()
    return CreatedPod(pod=pod, created=True)


def _check_spend(*, owner_id: uuid.UUID) -> None:
    burn = sum(
        p.hourly_rate
        for p in Pod.objects.filter(owner_id=owner_id, status__in=ON_NODE_STATUSES)
        .exclude(status=PodStatus.STOPPING)  # billing has ended for these
        .only("price_per_gpu_hour", "gpu_count")
    )
    refusal = spend_refusal(user_id=owner_id, current_burn=burn)
    if refusal:
        raise SpendRefusedError(refusal)


def pod_resume(*, pod: Pod) -> Pod:
    """Resume a stopped pod: PENDING again, pinned to its volume's node (or the node it last
    ran on), and placed at once when that node has its GPUs free; else it waits there and says
    why. Billing starts again when its new container runs."""
    _check_spend(owner_id=pod.owner_id)
    with transaction.atomic():
        locked = lock_pod(pod.pk)
        if locked is None or locked.status != PodStatus.STOPPED:
            status = locked.status if locked else "gone"
            raise PodNotResumableError(f"Pod is {status}: only a stopped pod can be resumed.")
        if locked.volume_id is not None:
            volume = volumes.lock_for_attach(
                volume=locked.volume,  # type: ignore[arg-type]
                pod_spec={"gpu_count": locked.gpu_count, "gpu_model": locked.gpu_model},
                resuming=locked,
            )
            locked.node = volume.node
        for name, value in RESUME_RESET.items():
            setattr(locked, name, value() if callable(value) else value)
        locked.request_id = request_context.current() or ""  # this start's request
        pod_transition(
            pod=locked,
            to=PodStatus.PENDING,
            reason="resumed by its owner",
            extra_fields=("node", "request_id", *RESUME_RESET),
        )
    schedule_pending(pod_ids=[pod.pk])
    locked.refresh_from_db()
    return locked


# What a resumed pod forgets of its last run (its node stays: it is where it resumes).
RESUME_RESET: dict[str, Any] = {
    "gpu_indices": list,
    "price_per_gpu_hour": None,
    "endpoints": dict,
    "started_at": None,
    "stopped_at": None,
    "billed_until": None,
    "billing_ends_at": None,
    "cpu_millicores": 0,
    "memory_mb": 0,
    "shm_mb": 0,
    "oom_killed": False,
}


def _release_gpus(pod: Pod) -> None:
    GpuAllocation.objects.filter(pod=pod).delete()


@transaction.atomic
def pod_stop(*, pod: Pod, reason: str = "stopped by its owner") -> Pod:
    """Stop a pod: billing ends now; the agent stops and removes the container."""
    locked = lock_pod(pod.pk)
    if locked is None or locked.status in FINAL or locked.status == PodStatus.STOPPING:
        return locked or pod
    if locked.status in (PodStatus.PENDING, PodStatus.PROVISIONING):
        pod_transition(pod=locked, to=PodStatus.STOPPED, reason=reason)
        return locked
    now = timezone.now()
    metering.meter_pod_until(pod=locked, until=now)
    locked.billing_ends_at = now
    pod_transition(
        pod=locked, to=PodStatus.STOPPING, reason=reason, extra_fields=("billing_ends_at",)
    )
    if locked.node is not None:
        node_services.workload_stop(node=locked.node, pod_id=locked.pk, timeout_s=10)
    else:  # the pod is an upstream container: terminate it there
        upstream.release_after_commit(locked.pk)
    return locked


@transaction.atomic
def pod_terminate(*, pod: Pod) -> Pod:
    """DELETE: stop if needed; a stopped or failed pod becomes TERMINATED."""
    locked = lock_pod(pod.pk)
    if locked is None:
        return pod
    if locked.status in (PodStatus.STOPPED, PodStatus.FAILED, PodStatus.INTERRUPTED):
        pod_transition(pod=locked, to=PodStatus.TERMINATED, reason="deleted by its owner")
        return locked
    return pod_stop(pod=locked, reason="deleted by its owner")


def _finish_on_node(*, pod: Pod, to: str, reason: str, ended_at: datetime) -> None:
    """The pod's container is gone or done: bill to `ended_at`, free its GPUs."""
    metering.meter_pod_until(pod=pod, until=ended_at)
    pod_transition(pod=pod, to=to, reason=reason)
    _release_gpus(pod)


@transaction.atomic
def pod_observe_workload(*, workload: Workload) -> None:
    """Drive the pod's state from what its node's agent reports of its container."""
    pod = lock_pod(workload.pod_id)
    if pod is None or pod.node_id != workload.node_id or pod.status in FINAL:
        return
    state = workload.state
    now = timezone.now()
    over_disk = _over_disk_quota(pod=pod, workload=workload)
    if over_disk and state == WorkloadState.RUNNING and pod.status == PodStatus.RUNNING:
        pod_stop(pod=pod, reason=over_disk)
        return
    if state == WorkloadState.RUNNING and pod.status in (PodStatus.SCHEDULED, PodStatus.STARTING):
        started = workload.started_at or now
        pod.started_at = started
        pod.billed_until = started
        pod.billed_seconds = 0
        pod.share_carry = 0
        pod_transition(
            pod=pod,
            to=PodStatus.RUNNING,
            reason="container running",
            extra_fields=("started_at", "billed_until", "billed_seconds", "share_carry"),
        )
    elif state == WorkloadState.REMOVED and pod.status == PodStatus.STOPPING:
        _finish_on_node(
            pod=pod,
            to=PodStatus.STOPPED,
            reason="container removed",
            ended_at=pod.billing_ends_at or now,
        )
    elif state in CONTAINER_ENDED and pod.status in ON_NODE_STATUSES:
        ended = workload.finished_at or now
        if pod.status == PodStatus.STOPPING:
            # The stop we asked for is in progress ("removed" follows); if the container ended
            # before the stop was asked for, billing ends there instead.
            if pod.billing_ends_at is None or ended < pod.billing_ends_at:
                pod.billing_ends_at = ended
                pod.save(update_fields=["billing_ends_at", "updated_at"])
            return
        code = workload.exit_code
        if "OOMKilled" in (workload.error or ""):
            pod.oom_killed = True
            pod.save(update_fields=["oom_killed", "updated_at"])
            _finish_on_node(
                pod=pod,
                to=PodStatus.FAILED,
                reason=(
                    f"out of memory: the container went over its {pod.memory_mb} MB memory "
                    f"limit and was killed (OOMKilled, exit code {code})"
                ),
                ended_at=ended,
            )
        elif state == WorkloadState.EXITED and code == 0:
            _finish_on_node(
                pod=pod, to=PodStatus.STOPPED, reason="container exited with code 0", ended_at=ended
            )
        else:
            what = f"exited with code {code}" if state == WorkloadState.EXITED else f"is {state}"
            _finish_on_node(
                pod=pod, to=PodStatus.FAILED, reason=f"container {what}", ended_at=ended
            )
        if pod.node is not None:
            node_services.workload_stop(node=pod.node, pod_id=pod.pk, timeout_s=5)


def pod_endpoints(*, address: str, ports: dict[str, Any]) -> dict[str, str]:
    """`{"8000/tcp": "203.0.113.7:32768"}` from a start_pod result's published ports and the
    node's address (loopback when the node reported none)."""
    host = address or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return {
        str(key): f"{host}:{int(port)}"
        for key, port in (ports or {}).items()
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit())
    }


@transaction.atomic
def pod_observe_command(*, command: NodeCommand) -> None:
    """A start_pod the agent carried out tells where the pod answers (its endpoints); one it
    could not carry out fails the pod."""
    if command.type == CommandType.START_POD and command.status == CommandStatus.ACKED:
        pod = lock_pod(command.payload.get("pod_id", ""))
        if pod is None or pod.node_id != command.node_id or pod.status in FINAL:
            return
        endpoints = pod_endpoints(
            address=pod.node.address if pod.node else "", ports=command.result.get("ports") or {}
        )
        if endpoints != pod.endpoints:
            pod.endpoints = endpoints
            pod.save(update_fields=["endpoints", "updated_at"])
        return
    if command.type != CommandType.START_POD or command.status != CommandStatus.FAILED:
        return
    pod = lock_pod(command.payload.get("pod_id", ""))
    if pod is None or pod.status not in (PodStatus.SCHEDULED, PodStatus.STARTING):
        return
    _finish_on_node(
        pod=pod,
        to=PodStatus.FAILED,
        reason=f"node could not start the container: {command.error}"[:500],
        ended_at=timezone.now(),
    )
    Workload.objects.filter(node_id=command.node_id, pod_id=pod.pk).update(wanted=False)


def pods_on_offline_node(*, node: Node, last_heartbeat_at: datetime, reason: str) -> None:
    """A node went silent: bill its pods up to its last heartbeat, then reschedule the
    restartable ones and fail the rest."""
    for pod_id in Pod.objects.filter(node=node, status__in=ON_NODE_STATUSES).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            pod = lock_pod(pod_id)
            if pod is None or pod.status not in ON_NODE_STATUSES:
                continue
            metering.meter_pod_until(pod=pod, until=last_heartbeat_at)
            Workload.objects.filter(node=node, pod_id=pod.pk).update(wanted=False)
            _release_gpus(pod)
            if pod.restartable and pod.status != PodStatus.STOPPING:
                # A pod with a volume waits for the volume's node; others may go anywhere.
                pod.node = node if pod.volume_id is not None else None
                pod.gpu_indices = []
                pod.billed_until = None
                pod_transition(
                    pod=pod,
                    to=PodStatus.PENDING,
                    reason=f"node {node.hostname} went offline ({reason}); rescheduling",
                    extra_fields=("node", "gpu_indices", "billed_until"),
                )
            elif pod.status == PodStatus.STOPPING:
                pod_transition(
                    pod=pod,
                    to=PodStatus.STOPPED,
                    reason=f"node {node.hostname} went offline while stopping",
                )
            else:
                pod_transition(
                    pod=pod,
                    to=PodStatus.FAILED,
                    reason=f"node {node.hostname} went offline ({reason})",
                )


def pod_fetch_logs(*, pod: Pod, tail: int = 200) -> NodeCommand | None:
    # Pods that run as upstream containers read their logs through `upstream.pod_upstream_logs`.
    """Ask the pod's agent for the container's last `tail` log lines (answered in its ack)."""
    if pod.node is None or pod.status not in ON_NODE_STATUSES:
        return None
    return node_services.command_enqueue(
        node=pod.node, type=CommandType.FETCH_LOGS, payload={"pod_id": str(pod.pk), "tail": tail}
    )


def volumes_observe_usage(
    *, node: Node, volumes_measured: list[dict[str, Any]], at: datetime
) -> int:
    """Record the agent's measurement of `node`'s volumes; stop the pods writing to any volume
    over its size, each with an event saying so. Returns how many pods were stopped."""
    stopped = 0
    for over in volumes.volumes_record_usage(node=node, volumes=volumes_measured, at=at):
        for pod in Pod.objects.filter(
            volume_id=over.volume_id,
            status__in=(PodStatus.SCHEDULED, PodStatus.STARTING, PodStatus.RUNNING),
        ):
            pod_stop(pod=pod, reason=over.reason)
            stopped += 1
    return stopped


def _over_disk_quota(*, pod: Pod, workload: Workload) -> str:
    """Why the pod's own writable layer is over its `disk_gb` ("" when it is not)."""
    used = workload.disk_used_bytes
    if used is None or used <= pod.disk_gb * volumes.GB:
        return ""
    return (
        f"the container's disk holds {used / volumes.GB:.2f} GB, over its {pod.disk_gb} GB "
        "limit: the pod was stopped (write large data to a volume instead)"
    )
