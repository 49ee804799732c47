"""Row locks of the sourcing app, in one order: a provisioned instance before its pod
(apps.pods.locks) and its node (apps.nodes.locks); ledger accounts (apps.billing.locks) last."""

import uuid
from collections.abc import Iterable

from apps.sourcing.models import ProvisionedInstance


def lock_instance(
    instance_id: uuid.UUID, *, skip_locked: bool = False
) -> ProvisionedInstance | None:
    # Serialises an instance's status changes: the provisioning tick, a Celery provisioning
    # task, reconciliation and a pod's stop must not each move it from the same stale status
    # (renting one pod two machines, or terminating a machine twice). skip_locked: periodic
    # passes skip an instance another worker is handling rather than queue behind it.
    return (
        ProvisionedInstance.objects.select_for_update(skip_locked=skip_locked)
        .filter(pk=instance_id)
        .first()
    )


def lock_instance_of_machine(
    provider_instance_id: str, statuses: Iterable[str]
) -> ProvisionedInstance | None:
    # The newest instance of a provider's machine in `statuses`, locked: an agent registering
    # on it must not race the tick that fails it for registering too late.
    return (
        ProvisionedInstance.objects.select_for_update()
        .filter(provider_instance_id=provider_instance_id, status__in=list(statuses))
        .order_by("-created_at")
        .first()
    )
