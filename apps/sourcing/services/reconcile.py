"""Reconciliation: what each provider reports against what we track."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apps.sourcing.adapters.base import (
    Instance,
    InstanceState,
    ProviderError,
)
from apps.sourcing.models import (
    LIVE_STATUSES,
    OrphanInstance,
    ProvisionedInstance,
)
from apps.sourcing.multi import MultiProviderService
from apps.sourcing.registry import make_service, publish_health
from apps.sourcing.services.common import S
from apps.sourcing.services.terminate import instance_close_out, terminate_upstream

logger = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    seen: int = 0
    orphans_flagged: int = 0
    orphans_terminated: int = 0
    closed_out: int = 0
    errors: dict[str, str] = field(default_factory=dict)


async def _list_all(service: MultiProviderService) -> dict[str, list[Instance] | Exception]:
    async def one(name: str) -> list[Instance] | Exception:
        try:
            return await service.adapters[name].list_instances()
        except ProviderError as exc:
            return exc

    try:
        names = list(service.adapters)
        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
    finally:
        await service.aclose()


def reconcile(*, now: datetime | None = None) -> ReconcileResult:
    """Compare what each provider reports with what we track. Untracked instances are
    flagged, then terminated after SOURCING_ORPHAN_GRACE_S (a create in flight has that long
    to record its id). Tracked instances the provider no longer has are closed out."""
    now = now or timezone.now()
    result = ReconcileResult()
    if not settings.SOURCING_ENABLED:
        return result  # with sourcing off we touch nothing upstream that is not ours
    grace = timedelta(seconds=settings.SOURCING_ORPHAN_GRACE_S)
    listed = asyncio.run(_list_all(make_service()))
    for provider, answer in listed.items():
        if isinstance(answer, Exception):
            result.errors[provider] = str(answer)
            continue
        upstream = {i.instance_id: i for i in answer if i.state != InstanceState.TERMINATED}
        result.seen += len(upstream)
        tracked = dict(
            ProvisionedInstance.objects.filter(provider=provider)
            .exclude(provider_instance_id="")
            .values_list("provider_instance_id", "status")
        )
        in_flight_labels = set(
            ProvisionedInstance.objects.filter(
                status__in=(S.PENDING, S.CREATING), provider_instance_id=""
            ).values_list("label", flat=True)
        )
        for iid, inst in upstream.items():
            status = tracked.get(iid)
            if status is not None and status in LIVE_STATUSES:
                continue
            if inst.label in in_flight_labels:
                continue  # its create is being recorded right now
            orphan, created = OrphanInstance.objects.get_or_create(
                provider=provider, provider_instance_id=iid, defaults={"label": inst.label[:255]}
            )
            if created:
                result.orphans_flagged += 1
                logger.warning("orphan instance %s:%s (%s) flagged", provider, iid, inst.label)
            if now - orphan.first_seen_at >= grace and orphan.terminated_at is None:
                try:
                    asyncio.run(terminate_upstream(make_service([provider]), provider, iid))
                except ProviderError as exc:
                    result.errors[f"{provider}:{iid}"] = str(exc)
                    continue
                OrphanInstance.objects.filter(pk=orphan.pk).update(terminated_at=timezone.now())
                result.orphans_terminated += 1
        for instance in ProvisionedInstance.objects.filter(
            provider=provider,
            status__in=[S.STARTING, S.INSTALLING, S.WAITING_REGISTRATION, S.ACTIVE],
        ).exclude(provider_instance_id=""):
            if instance.provider_instance_id not in upstream:
                instance_close_out(
                    instance_id=instance.pk, reason="no longer listed by the provider"
                )
                result.closed_out += 1
            else:
                ProvisionedInstance.objects.filter(pk=instance.pk).update(last_seen_upstream_at=now)
    publish_health()
    return result
