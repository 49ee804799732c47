"""The provisioning tick: follow booting machines, fail the ones whose agent never registered,
hand ready machines to their pods, retire idle ones, terminate upstream."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.nodes.models import NodeStatus
from apps.pods import upstream as pod_upstream
from apps.pods.models import ON_NODE_STATUSES, Pod, PodStatus
from apps.pods.scheduler import schedule_pending
from apps.sourcing.adapters.base import (
    AlreadyGoneError,
    Instance,
    InstanceState,
    ProviderError,
)
from apps.sourcing.lifecycle import instance_transition
from apps.sourcing.locks import lock_instance
from apps.sourcing.models import (
    ProvisionedInstance,
)
from apps.sourcing.multi import MultiProviderService
from apps.sourcing.registry import configured_providers, make_service
from apps.sourcing.services.common import (
    LOST_CREATE_AFTER,
    WAITING,
    S,
    launch_stats_bump,
)
from apps.sourcing.services.containers import (
    CONTAINER,
    container_follow,
    container_instances_of_ended_pods,
)
from apps.sourcing.services.provisioning import instance_provision
from apps.sourcing.services.terminate import instance_close_out, instance_terminate

logger = logging.getLogger(__name__)


@dataclass
class TickResult:
    provisioned: int = 0
    advanced: int = 0
    failed: int = 0
    terminated: int = 0
    pods_released: int = 0


async def _get_all(
    service, wanted: list[tuple[str, str]]
) -> dict[tuple[str, str], Instance | Exception]:
    async def one(provider: str, iid: str) -> Instance | Exception:
        try:
            return await service.adapters[provider].get_instance(iid)
        except (ProviderError, KeyError) as exc:
            return exc

    try:
        answers = await asyncio.gather(*(one(p, i) for p, i in wanted))
    finally:
        await service.aclose()
    return dict(zip(wanted, answers, strict=True))


def provisioning_tick(*, now: datetime | None = None) -> TickResult:
    """One pass: rent for PENDING instances, follow booting ones, fail the ones whose agent
    never registered, hand ACTIVE machines to their pods, retire idle ones."""
    result = TickResult()
    for instance_id in ProvisionedInstance.objects.filter(status=S.PENDING).values_list(
        "pk", flat=True
    )[:20]:
        instance = instance_provision(instance_id=instance_id)
        if instance is not None and instance.status != S.FAILED:
            result.provisioned += 1
    now = now or timezone.now()
    # Booting machines, and container rentals for as long as they live: a container cloud's
    # pod is known only from these polls (one every tick: SOURCING_POLL_INTERVAL_S).
    polled = list(
        ProvisionedInstance.objects.filter(
            Q(status__in=WAITING) | Q(status=S.ACTIVE, execution_model=CONTAINER)
        ).exclude(provider_instance_id="")
    )
    providers = set(configured_providers())
    wanted = [(i.provider, i.provider_instance_id) for i in polled if i.provider in providers]
    answers = asyncio.run(_get_all(make_service(), wanted)) if wanted else {}
    for instance in polled:
        answer = answers.get((instance.provider, instance.provider_instance_id))
        if instance.execution_model == CONTAINER:
            if isinstance(answer, Instance) or isinstance(answer, AlreadyGoneError):
                result.advanced += container_follow(
                    instance, answer if isinstance(answer, Instance) else None
                )
        elif isinstance(answer, Instance):
            result.advanced += _follow(instance, answer)
        elif isinstance(answer, AlreadyGoneError):
            instance_close_out(instance_id=instance.pk, reason="the provider no longer has it")
            result.failed += 1
    for instance in ProvisionedInstance.objects.filter(
        status__in=WAITING, registration_deadline__lt=now
    ):
        limit = settings.SOURCING_REGISTRATION_TIMEOUT_S
        instance_fail(
            instance_id=instance.pk,
            reason=(
                f"the container did not start within {limit} s"
                if instance.execution_model == CONTAINER
                else f"the agent did not register within {limit} s"
            ),
        )
        result.failed += 1
    for instance_id in container_instances_of_ended_pods():
        if instance_terminate(instance_id=instance_id, reason="its pod ended"):
            result.terminated += 1
    _resolve_lost_creates(now)
    result.terminated += _abandon_unwanted(now)
    result.pods_released += _release_pods()
    result.terminated += _retire_idle(now)
    for instance_id, why in ProvisionedInstance.objects.filter(status=S.TERMINATING).values_list(
        "pk", "status_reason"
    ):
        final = S.FAILED if why.startswith("failing:") else S.TERMINATED
        if instance_terminate(instance_id=instance_id, reason="retrying terminate", final=final):
            result.terminated += 1
    return result


def _follow(instance: ProvisionedInstance, upstream: Instance) -> int:
    """Move a booting instance along what its provider reports."""
    with transaction.atomic():
        locked = lock_instance(instance.pk, skip_locked=True)
        if locked is None or locked.status not in WAITING:
            return 0
        locked.upstream_status = upstream.provider_status[:64]
        locked.last_seen_upstream_at = timezone.now()
        locked.save(update_fields=["upstream_status", "last_seen_upstream_at"])
        if upstream.state == InstanceState.RUNNING and locked.status in (S.CREATING, S.STARTING):
            instance_transition(
                instance=locked,
                to=S.INSTALLING,
                reason="machine up: the startup script installs the agent",
            )
            return 1
        if upstream.state == InstanceState.RUNNING and locked.status == S.INSTALLING:
            instance_transition(
                instance=locked,
                to=S.WAITING_REGISTRATION,
                reason="waiting for the agent to register",
            )
            return 1
    if upstream.state == InstanceState.FAILED:
        instance_fail(
            instance_id=instance.pk, reason=f"the provider reports it failed: {upstream.message}"
        )
        return 1
    if upstream.state == InstanceState.TERMINATED:
        instance_close_out(instance_id=instance.pk, reason="terminated upstream")
        return 1
    return 0


def instance_fail(*, instance_id: uuid.UUID, reason: str) -> None:
    """FAILED, the pod back to PENDING, and the machine terminated upstream."""
    with transaction.atomic():
        instance = lock_instance(instance_id)
        if instance is None or instance.status in (S.FAILED, S.TERMINATED):
            return
        if instance.status == S.TERMINATING:
            return
        launch_stats_bump(instance.provider or "unknown", instance.gpu_model, failures=1)
        instance_transition(instance=instance, to=S.TERMINATING, reason=f"failing: {reason}")
        pod_upstream.pod_rental_failed(
            pod_id=instance.pod_id, reason=f"upstream machine failed: {reason}"
        )
    instance_terminate(instance_id=instance_id, reason=reason, final=S.FAILED)


def _abandon_unwanted(now: datetime) -> int:
    """A machine still booting whose pod has ended (stopped, failed, deleted) is not kept
    booting until its deadline: terminated now, unless instances are kept warm."""
    if settings.SOURCING_IDLE_KEEP_S:
        return 0
    count = 0
    for instance_id in ProvisionedInstance.objects.filter(
        status__in=WAITING,
        pod__status__in=(PodStatus.STOPPED, PodStatus.FAILED, PodStatus.TERMINATED),
    ).values_list("pk", flat=True):
        if instance_terminate(instance_id=instance_id, reason="its pod ended before it was ready"):
            count += 1
    return count


def _release_pods() -> int:
    """Pods waiting on an ACTIVE instance whose node is ONLINE go back to PENDING and are
    scheduled at once (onto that node, the cheapest fit for them)."""
    released = []
    for instance in ProvisionedInstance.objects.filter(
        status=S.ACTIVE, node__status=NodeStatus.ONLINE, pod__status=PodStatus.PROVISIONING
    ):
        if instance.pod_id is None:
            continue
        with transaction.atomic():
            if pod_upstream.pod_rental_ready(
                pod_id=instance.pod_id, reason="upstream machine ready"
            ):
                released.append(instance.pod_id)
    if released:
        schedule_pending(pod_ids=released)
    return len(released)


def _retire_idle(now: datetime) -> int:
    """An ACTIVE instance with no pod on its node (and none waiting for it) is idle; after
    SOURCING_IDLE_KEEP_S it is terminated."""
    count = 0
    keep = timedelta(seconds=settings.SOURCING_IDLE_KEEP_S)
    for instance in ProvisionedInstance.objects.filter(status=S.ACTIVE, node__isnull=False):
        assert instance.node_id is not None  # noqa: S101 - filtered above
        busy = Pod.objects.filter(
            node_id=instance.node_id, status__in=ON_NODE_STATUSES
        ).exists() or (
            instance.pod_id is not None
            and Pod.objects.filter(
                pk=instance.pod_id, status__in=(PodStatus.PROVISIONING, PodStatus.PENDING)
            ).exists()
        )
        if busy:
            if instance.idle_since is not None:
                ProvisionedInstance.objects.filter(pk=instance.pk).update(idle_since=None)
            continue
        if instance.idle_since is None:
            ProvisionedInstance.objects.filter(pk=instance.pk).update(idle_since=now)
            instance.idle_since = now
        if now - instance.idle_since >= keep:
            with transaction.atomic():
                locked = lock_instance(instance.pk, skip_locked=True)
                if locked is None or locked.status != S.ACTIVE:
                    continue
                instance_transition(
                    instance=locked, to=S.TERMINATING, reason="idle: no pod needs it"
                )
            if instance_terminate(instance_id=instance.pk, reason="idle"):
                count += 1
    return count


def _resolve_lost_creates(now: datetime) -> None:
    """A CREATING instance with no upstream id long after its create was sent lost its answer
    (or its worker died): find it by label; found → adopted, not found → FAILED."""
    stuck = ProvisionedInstance.objects.filter(
        status=S.CREATING, provider_instance_id="", create_sent_at__lt=now - LOST_CREATE_AFTER
    )
    for instance in stuck:
        found = asyncio.run(_find_label(make_service(), instance.label))
        if found is None:
            instance_fail(instance_id=instance.pk, reason="create lost and nothing found by label")
            continue
        with transaction.atomic():
            locked = lock_instance(instance.pk)
            if locked is None or locked.status != S.CREATING or locked.provider_instance_id:
                continue
            locked.provider = found.provider
            locked.provider_instance_id = found.instance_id
            locked.upstream_price_per_hour = found.price_per_hour
            locked.cost_accrued_until = locked.create_sent_at
            instance_transition(
                instance=locked,
                to=S.STARTING,
                reason="adopted by label after a lost create",
                extra_fields=(
                    "provider",
                    "provider_instance_id",
                    "upstream_price_per_hour",
                    "cost_accrued_until",
                ),
            )


async def _find_label(service: MultiProviderService, label: str) -> Instance | None:
    try:
        for adapter in service.adapters.values():
            try:
                found = await adapter.find_by_label(label)
            except ProviderError:
                continue
            if found is not None:
                return found
        return None
    finally:
        await service.aclose()
