"""What the provisioning services share: the switches and launch statistics. (Row locks are in
apps.sourcing.locks; pods are moved through apps.pods.upstream, never pod_transition.)"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import F

from apps.sourcing.models import (
    InstanceStatus,
    LaunchStat,
)

S = InstanceStatus


WAITING = (S.CREATING, S.STARTING, S.INSTALLING, S.WAITING_REGISTRATION)


LOST_CREATE_AFTER = timedelta(seconds=120)


def sourcing_on() -> bool:
    return bool(settings.SOURCING_ENABLED and settings.AUTO_PROVISIONING_ENABLED)


def launch_stats_bump(provider: str, gpu_model: str, **deltas: int | float) -> None:
    stat, _ = LaunchStat.objects.get_or_create(provider=provider, gpu_model=gpu_model)
    LaunchStat.objects.filter(pk=stat.pk).update(**{k: F(k) + v for k, v in deltas.items()})
