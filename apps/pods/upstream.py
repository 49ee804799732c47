"""Pods that *are* an upstream container (DESIGN.md §7, container clouds): no node, no agent;
the sourcing app polls the provider and drives the pod through these functions. Each one
expects the caller's transaction and locks the pod itself.

The pods app never imports sourcing: what it needs from it (terminate the rented container,
read its logs) goes through the module named by `POD_UPSTREAM_BACKEND`, the way placement goes
through `POD_CAPACITY_SOURCES`."""

from __future__ import annotations

import importlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from types import ModuleType
from typing import Protocol, cast

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.money import micros_to_usd
from apps.pods import metering
from apps.pods.lifecycle import FINAL, pod_transition
from apps.pods.locks import lock_pod
from apps.pods.models import ON_NODE_STATUSES, Pod, PodRestart, PodStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamLogs:
    """The container's log, or why there is none (`unavailable`, in words for the owner)."""

    logs: str | None
    unavailable: str = ""


class UpstreamBackend(Protocol):
    def pod_release(self, *, pod_id: uuid.UUID) -> None:
        """Terminate the pod's rented container (called after the stop commits)."""

    def pod_logs(self, *, pod: Pod, tail: int) -> UpstreamLogs: ...


@cache
def backend() -> UpstreamBackend:
    module: ModuleType = importlib.import_module(settings.POD_UPSTREAM_BACKEND)
    return cast(UpstreamBackend, module)


def runs_upstream(pod: Pod) -> bool:
    """The pod is a container on an upstream cloud (placed, with no node of ours)."""
    return pod.node_id is None and pod.status in ON_NODE_STATUSES


def pod_upstream_starting(*, pod_id: uuid.UUID, price_per_gpu_hour: int, reason: str) -> None:
    """The rented container is being created: the pod is STARTING at its price."""
    pod = lock_pod(pod_id)
    if pod is None or pod.status != PodStatus.PROVISIONING:
        return
    pod.price_per_gpu_hour = price_per_gpu_hour
    pod_transition(
        pod=pod, to=PodStatus.STARTING, reason=reason, extra_fields=("price_per_gpu_hour",)
    )


def pod_upstream_running(
    *,
    pod_id: uuid.UUID,
    at: datetime,
    endpoints: dict[str, str],
    price_per_gpu_hour: int,
    reason: str,
) -> None:
    """The provider reports the container running: billing starts now; endpoints are the
    provider's port mappings. Later polls only move `upstream_seen_at` (and endpoints)."""
    pod = lock_pod(pod_id)
    if pod is None:
        return
    if pod.status == PodStatus.RUNNING:
        pod.upstream_seen_at = at
        fields = ["upstream_seen_at", "updated_at"]
        if endpoints and endpoints != pod.endpoints:
            pod.endpoints = endpoints
            fields.append("endpoints")
        pod.save(update_fields=fields)
        return
    if pod.status not in (PodStatus.PROVISIONING, PodStatus.STARTING):
        return
    pod.price_per_gpu_hour = price_per_gpu_hour
    pod.started_at = at
    pod.billed_until = at
    pod.upstream_seen_at = at
    pod.endpoints = endpoints
    pod_transition(
        pod=pod,
        to=PodStatus.RUNNING,
        reason=reason,
        extra_fields=(
            "price_per_gpu_hour",
            "started_at",
            "billed_until",
            "upstream_seen_at",
            "endpoints",
        ),
    )


def pod_upstream_ended(*, pod_id: uuid.UUID, to: str, reason: str) -> None:
    """The container is gone for good (exited, failed, terminated after a stop): billed up to
    the last time the provider reported it running (or the stop), then final."""
    pod = lock_pod(pod_id)
    if pod is None or pod.status in FINAL:
        return
    if pod.status == PodStatus.STOPPING:
        to = PodStatus.STOPPED if to != PodStatus.FAILED else to
    if pod.status in (PodStatus.RUNNING, PodStatus.STOPPING):
        ends = [e for e in (pod.upstream_seen_at, pod.billing_ends_at) if e is not None]
        metering.meter_pod_until(pod=pod, until=min(ends) if ends else timezone.now())
    pod_transition(pod=pod, to=to, reason=reason)


def pod_interrupt(*, pod_id: uuid.UUID, reason: str) -> bool:
    """The cloud took the pod's spot container back. Billing ends at the interruption: the
    last time the provider reported it running (nothing after it is ever charged). The owner
    sees an event and gets an email; with `restart: on-interruption` the pod goes back to
    PENDING to be placed again (the caller schedules it after commit). Returns whether it
    was requeued."""
    pod = lock_pod(pod_id)
    if pod is None or pod.status not in (PodStatus.STARTING, PodStatus.RUNNING):
        return False
    at = pod.upstream_seen_at or pod.started_at or timezone.now()
    if pod.status == PodStatus.RUNNING:
        metering.meter_pod_until(pod=pod, until=at)
    pod.interruptions += 1
    pod.billing_ends_at = at
    pod_transition(
        pod=pod,
        to=PodStatus.INTERRUPTED,
        reason=reason,
        extra_fields=("interruptions", "billing_ends_at"),
    )
    owner_email = User.objects.filter(pk=pod.owner_id).values_list("email", flat=True).first()
    restart = pod.restart == PodRestart.ON_INTERRUPTION
    if owner_email:
        body = (
            f"Your spot pod {pod.name} ({pod.pk}) was interrupted by its cloud at "
            f"{at:%Y-%m-%d %H:%M:%S} UTC: {reason}. Billing stopped at that moment "
            f"(${micros_to_usd(pod.hourly_rate)}/h before it). "
            + (
                "It is being placed again (restart: on-interruption)."
                if restart
                else "Start a new pod to continue."
            )
        )
        transaction.on_commit(
            lambda: send_mail(
                f"Your pod {pod.name} was interrupted",
                body,
                None,
                [owner_email],
                fail_silently=True,
            )
        )
    if not restart:
        return False
    pod.node = None
    pod.gpu_indices = []
    pod.billed_until = None
    pod.billing_ends_at = None
    pod.started_at = None
    pod.stopped_at = None
    pod.upstream_seen_at = None
    pod.endpoints = {}
    pod.price_per_gpu_hour = None
    pod_transition(
        pod=pod,
        to=PodStatus.PENDING,
        reason="restart: on-interruption: placing it again",
        extra_fields=(
            "node",
            "gpu_indices",
            "billed_until",
            "billing_ends_at",
            "started_at",
            "upstream_seen_at",
            "endpoints",
            "price_per_gpu_hour",
        ),
    )
    return True


def pod_rental_requested(*, pod: Pod, reason: str) -> None:
    """An upstream machine is being rented for `pod` (locked by the caller: the scheduler's
    placement transaction): PENDING → PROVISIONING until the machine is ready."""
    pod_transition(pod=pod, to=PodStatus.PROVISIONING, reason=reason)


def pod_rental_ready(*, pod_id: uuid.UUID, reason: str) -> bool:
    """The machine rented for the pod is up and its node ONLINE: PROVISIONING → PENDING, so
    the scheduler places it (onto that node, the cheapest fit). False: the pod no longer
    waits (stopped meanwhile, say)."""
    pod = lock_pod(pod_id)
    if pod is None or pod.status != PodStatus.PROVISIONING:
        return False
    pod_transition(pod=pod, to=PodStatus.PENDING, reason=reason)
    return True


def pod_rental_failed(*, pod_id: uuid.UUID | None, reason: str) -> bool:
    """The pod's rental failed before the pod ran (a pod that is an upstream container is
    STARTING, with no node, while its rental boots): it waits for another placement. False:
    the pod had moved on (running elsewhere, stopped) and is left alone."""
    if pod_id is None:
        return False
    pod = lock_pod(pod_id)
    if pod is None:
        return False
    if pod.status == PodStatus.PROVISIONING or (
        pod.status == PodStatus.STARTING and pod.node_id is None
    ):
        pod_transition(pod=pod, to=PodStatus.PENDING, reason=reason)
        return True
    return False


def pod_upstream_logs(*, pod: Pod, tail: int) -> UpstreamLogs:
    return backend().pod_logs(pod=pod, tail=tail)


def release_after_commit(pod_id: uuid.UUID) -> None:
    """Terminate the pod's rented container once the stop is committed (the provisioning
    tick does it too, should this dispatch be lost)."""
    transaction.on_commit(lambda: backend().pod_release(pod_id=pod_id))
