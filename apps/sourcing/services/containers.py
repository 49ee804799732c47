"""Container-cloud rentals (Vast.ai, RunPod): the customer's pod *is* the upstream instance.
No agent runs inside; what the pod is doing is learned by polling the provider (the
provisioning tick, every SOURCING_POLL_INTERVAL_S) and mapped here:

| provider reports (adapters' InstanceState)       | instance        | pod                      |
|--------------------------------------------------|-----------------|--------------------------|
| CREATING / STARTING / PENDING                    | STARTING        | STARTING                 |
| RUNNING (ports published)                        | ACTIVE          | RUNNING, endpoints       |
| INTERRUPTED; or a spot rental STOPPED / gone     | → TERMINATED    | INTERRUPTED (→ PENDING)  |
| FAILED / STOPPED (the container exited)          | → TERMINATED    | STOPPED (code 0) / FAILED|
| gone (not a spot rental)                         | TERMINATED      | FAILED                   |

Billing runs from the first RUNNING report and never past the last one (`upstream_seen_at`),
so a container that vanishes between two polls is not charged for the gap."""

from __future__ import annotations

import asyncio
import logging
import uuid

from django.db import transaction
from django.utils import timezone

from apps.pods import upstream as pod_upstream
from apps.pods.models import Pod, PodStatus
from apps.pods.scheduler import schedule_pending
from apps.sourcing.adapters.base import (
    Instance,
    InstanceState,
    LogsUnavailableError,
    ProviderError,
)
from apps.sourcing.lifecycle import instance_transition
from apps.sourcing.locks import lock_instance
from apps.sourcing.models import LIVE_STATUSES, ProvisionedInstance
from apps.sourcing.multi import MultiProviderService
from apps.sourcing.registry import make_service
from apps.sourcing.services.common import WAITING, S, launch_stats_bump
from apps.sourcing.services.terminate import instance_terminate

logger = logging.getLogger(__name__)

CONTAINER = "container"
ENDED_POD_STATUSES = (
    PodStatus.STOPPING,
    PodStatus.STOPPED,
    PodStatus.FAILED,
    PodStatus.INTERRUPTED,
    PodStatus.TERMINATED,
    PodStatus.PENDING,  # requeued elsewhere after an interruption
)


def container_follow(instance: ProvisionedInstance, upstream: Instance | None) -> int:
    """Move a container rental and its pod along what the provider reports (`None`: the
    provider no longer has it). Returns 1 when something changed."""
    state = upstream.state if upstream is not None else InstanceState.TERMINATED
    now = timezone.now()
    with transaction.atomic():
        locked = lock_instance(instance.pk, skip_locked=True)
        if locked is None or locked.status not in (*WAITING, S.ACTIVE):
            return 0
        if upstream is not None:
            locked.upstream_status = upstream.provider_status[:64]
        pod_id = locked.pod_id
        if state in (InstanceState.CREATING, InstanceState.STARTING, InstanceState.PENDING):
            locked.save(update_fields=["upstream_status", "updated_at"])
            return 0
        if state == InstanceState.RUNNING:
            assert upstream is not None  # noqa: S101 - RUNNING comes from an answer
            locked.last_seen_upstream_at = now
            fields = ["upstream_status", "last_seen_upstream_at"]
            if pod_id is not None:
                pod_upstream.pod_upstream_running(
                    pod_id=pod_id,
                    at=now,
                    endpoints=dict(upstream.endpoints),
                    price_per_gpu_hour=locked.price_per_gpu_hour or 0,
                    reason=(
                        f"the upstream container is running "
                        f"({locked.gpu_count}× {locked.gpu_model})"
                    ),
                )
            if locked.status == S.ACTIVE:
                locked.save(update_fields=[*fields, "updated_at"])
                return 0
            locked.active_at = now
            instance_transition(
                instance=locked,
                to=S.ACTIVE,
                reason="the provider reports the container running",
                extra_fields=(*fields, "active_at"),
            )
            waited = (now - (locked.create_sent_at or now)).total_seconds()
            launch_stats_bump(
                locked.provider, locked.gpu_model, activations=1, seconds_to_active_total=waited
            )
            return 1
        # The container is over: decide what it means for the pod, then return the rental.
        interrupted = state == InstanceState.INTERRUPTED or (
            locked.spot and state in (InstanceState.STOPPED, InstanceState.TERMINATED)
        )
        requeued = False
        if interrupted:
            what = upstream.message if upstream is not None and upstream.message else "reclaimed"
            why = f"interrupted: the cloud took the spot container back ({what})"
            if pod_id is not None:
                requeued = pod_upstream.pod_interrupt(pod_id=pod_id, reason=why)
            final = S.TERMINATED
        elif state == InstanceState.TERMINATED:
            why = "the provider no longer has the container"
            if pod_id is not None:
                pod_upstream.pod_upstream_ended(
                    pod_id=pod_id, to=PodStatus.FAILED, reason=f"upstream host lost: {why}"
                )
            final = S.TERMINATED
        else:
            code = upstream.exit_code if upstream is not None else None
            message = upstream.message if upstream is not None else ""
            clean = code == 0 or (state == InstanceState.STOPPED and code is None)
            if state == InstanceState.STOPPED and code is None:
                why = "the container exited (the provider reports no exit code)"
            elif code is not None:
                why = f"the container exited with code {code}"
            else:
                why = f"the provider reports the container failed: {message}"
            if pod_id is not None:
                pod_upstream.pod_upstream_ended(
                    pod_id=pod_id,
                    to=PodStatus.STOPPED if clean else PodStatus.FAILED,
                    reason=why[:500],
                )
            if not clean and locked.status != S.ACTIVE:
                launch_stats_bump(locked.provider, locked.gpu_model, failures=1)
            final = S.TERMINATED if clean else S.FAILED
        locked.save(update_fields=["upstream_status", "updated_at"])
        instance_transition(
            instance=locked,
            to=S.TERMINATING,
            reason=("failing: " if final == S.FAILED else "") + why[:480],
        )
    instance_terminate(instance_id=instance.pk, reason=why, final=final)
    if requeued and pod_id is not None:
        schedule_pending(pod_ids=[pod_id])
    return 1


def container_instances_of_ended_pods() -> list[uuid.UUID]:
    """Live container rentals whose pod is stopping, ended or placed again elsewhere."""
    return list(
        ProvisionedInstance.objects.filter(
            execution_model=CONTAINER,
            status__in=[s for s in LIVE_STATUSES if s not in (S.PENDING, S.TERMINATING)],
            pod__status__in=ENDED_POD_STATUSES,
        ).values_list("pk", flat=True)
    )


def pod_release(*, pod_id: uuid.UUID) -> int:
    """Terminate the container rentals of a pod that stopped (or ended); each terminated one
    finishes the pod's stop. Safe to run twice: a terminated rental is skipped."""
    released = 0
    for instance_id in ProvisionedInstance.objects.filter(
        pod_id=pod_id,
        execution_model=CONTAINER,
        status__in=[s for s in LIVE_STATUSES if s != S.PENDING],
        pod__status__in=ENDED_POD_STATUSES,
    ).values_list("pk", flat=True):
        if instance_terminate(instance_id=instance_id, reason="its pod was stopped"):
            released += 1
    return released


async def _logs(service: MultiProviderService, provider: str, instance_id: str, tail: int) -> str:
    try:
        return await service.adapters[provider].fetch_logs(instance_id, tail=tail)
    finally:
        await service.aclose()


def pod_logs(*, pod: Pod, tail: int) -> pod_upstream.UpstreamLogs:
    """The container's log from its provider (Vast: an uploaded log file); a provider with
    no log API gets the reason in words instead."""
    instance = (
        ProvisionedInstance.objects.filter(pod=pod, execution_model=CONTAINER, status=S.ACTIVE)
        .order_by("-created_at")
        .first()
    )
    if instance is None:
        return pod_upstream.UpstreamLogs(None, "The pod's container is not running upstream.")
    try:
        service = make_service([instance.provider])  # reads the database: before the loop
        text = asyncio.run(_logs(service, instance.provider, instance.provider_instance_id, tail))
    except LogsUnavailableError as exc:
        return pod_upstream.UpstreamLogs(None, str(exc))
    except (ProviderError, KeyError) as exc:
        logger.warning("logs of %s: %s", instance.label, exc)
        return pod_upstream.UpstreamLogs(
            None, "The upstream cloud did not hand over the log just now; try again."
        )
    return pod_upstream.UpstreamLogs("\n".join(text.splitlines()[-tail:]))
