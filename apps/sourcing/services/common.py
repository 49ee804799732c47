"""What the provisioning services share: the switches, row locks, pod hand-back, launch
statistics."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import F

from apps.pods.lifecycle import pod_transition
from apps.pods.models import Pod, PodStatus
from apps.sourcing.models import (
    InstanceStatus,
    LaunchStat,
    ProvisionedInstance,
)

S = InstanceStatus


WAITING = (S.CREATING, S.STARTING, S.INSTALLING, S.WAITING_REGISTRATION)


LOST_CREATE_AFTER = timedelta(seconds=120)


def sourcing_on() -> bool:
    return bool(settings.SOURCING_ENABLED and settings.AUTO_PROVISIONING_ENABLED)


def _lock(instance_id: uuid.UUID, *, skip_locked: bool = False) -> ProvisionedInstance | None:
    return (
        ProvisionedInstance.objects.select_for_update(skip_locked=skip_locked)
        .filter(pk=instance_id)
        .first()
    )


def _pod_back_to_pending(pod_id: uuid.UUID | None, reason: str) -> None:
    """The pod's rental failed before it ran: it waits for another placement. (A pod that is
    an upstream container is STARTING, with no node, while its rental boots.)"""
    if pod_id is None:
        return
    pod = Pod.objects.select_for_update().filter(pk=pod_id).first()
    if pod is None:
        return
    if pod.status == PodStatus.PROVISIONING or (
        pod.status == PodStatus.STARTING and pod.node_id is None
    ):
        pod_transition(pod=pod, to=PodStatus.PENDING, reason=reason)


def _bump_stats(provider: str, gpu_model: str, **deltas: int | float) -> None:
    stat, _ = LaunchStat.objects.get_or_create(provider=provider, gpu_model=gpu_model)
    LaunchStat.objects.filter(pk=stat.pk).update(**{k: F(k) + v for k, v in deltas.items()})
