"""Terminating a rented instance upstream and closing it out here (shared by the tick, the
container-rental follow-up and reconciliation)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from django.db import transaction
from django.utils import timezone

from apps.nodes.operations import node_retire_if_live
from apps.pods import upstream as pod_upstream
from apps.pods.models import PodStatus
from apps.sourcing.adapters.base import ProviderError
from apps.sourcing.lifecycle import instance_transition
from apps.sourcing.locks import lock_instance
from apps.sourcing.models import ProvisionedInstance
from apps.sourcing.multi import MultiProviderService
from apps.sourcing.registry import configured_providers, make_service
from apps.sourcing.services.common import S
from apps.sourcing.services.costs import accrue_upstream_costs

logger = logging.getLogger(__name__)


def _retire_node(instance: ProvisionedInstance, reason: str) -> None:
    if instance.node_id is not None:
        node_retire_if_live(node_id=instance.node_id, reason=f"upstream instance ended: {reason}")


async def terminate_upstream(
    service: MultiProviderService, provider: str, instance_id: str
) -> None:
    try:
        await service.adapters[provider].terminate_instance(instance_id)
    finally:
        await service.aclose()


def instance_terminate(*, instance_id: uuid.UUID, reason: str, final: str = S.TERMINATED) -> bool:
    """Terminate upstream (an instance already gone counts as terminated), then close it
    out. A failed call leaves it TERMINATING for the next tick."""
    instance = ProvisionedInstance.objects.filter(pk=instance_id).first()
    if instance is None or instance.status in (S.TERMINATED, S.FAILED):
        return False
    if instance.status != S.TERMINATING:
        with transaction.atomic():
            locked = lock_instance(instance_id)
            if locked is None or locked.status in (S.TERMINATED, S.FAILED, S.TERMINATING):
                return False
            instance_transition(instance=locked, to=S.TERMINATING, reason=reason)
            instance = locked
    if instance.provider_instance_id:
        if instance.provider not in configured_providers():
            # No key for it any more: we cannot terminate it, so we must not call it ended.
            logger.error(
                "cannot terminate %s: provider %s not configured", instance, instance.provider
            )
            return False
        try:
            asyncio.run(
                terminate_upstream(
                    make_service([instance.provider]),
                    instance.provider,
                    instance.provider_instance_id,
                )
            )
        except ProviderError as exc:
            logger.warning("terminate %s failed: %s", instance.label, exc)
            return False
    with transaction.atomic():
        locked = lock_instance(instance_id)
        if locked is None or locked.status != S.TERMINATING:
            return False
        locked.terminated_at = timezone.now()
        instance_transition(
            instance=locked,
            to=final,
            reason=f"terminated upstream: {reason}",
            extra_fields=("terminated_at",),
        )
        _retire_node(locked, reason)
        if locked.execution_model == "container" and locked.pod_id is not None:
            # The pod was this container: a stop it was waiting on is complete.
            pod = locked.pod
            if pod is not None and pod.status == PodStatus.STOPPING:
                pod_upstream.pod_upstream_ended(
                    pod_id=pod.pk,
                    to=PodStatus.STOPPED,
                    reason="stopped: its upstream container was terminated",
                )
    accrue_upstream_costs(instance_ids=[instance_id])
    return True


def instance_close_out(*, instance_id: uuid.UUID, reason: str) -> None:
    """The provider no longer has it: stop the cost where we last saw it."""
    with transaction.atomic():
        instance = lock_instance(instance_id)
        if instance is None or instance.status in (S.TERMINATED, S.FAILED):
            return
        instance.terminated_at = instance.last_seen_upstream_at or timezone.now()
        if instance.cost_accrued_until and instance.terminated_at < instance.cost_accrued_until:
            instance.terminated_at = instance.cost_accrued_until
        instance_transition(
            instance=instance, to=S.TERMINATED, reason=reason, extra_fields=("terminated_at",)
        )
        pod_upstream.pod_rental_failed(
            pod_id=instance.pod_id, reason=f"upstream machine gone: {reason}"
        )
        _retire_node(instance, reason)
    accrue_upstream_costs(instance_ids=[instance_id])
