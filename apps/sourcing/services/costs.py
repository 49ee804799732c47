"""Upstream cost in the ledger, and margins per pod, provider and GPU model."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account
from apps.core.money import micros_to_usd, prorate
from apps.pods.models import ON_NODE_STATUSES, Pod, UsageRecord
from apps.sourcing.locks import lock_instance
from apps.sourcing.models import (
    BILLED_STATUSES,
    ProvisionedInstance,
    UpstreamCharge,
)


def accrue_upstream_costs(
    *, now: datetime | None = None, instance_ids: list[uuid.UUID] | None = None
) -> int:
    """Book each rented instance's upstream cost since `cost_accrued_until` (up to now, or
    to its termination) against the platform's revenue: revenue −x, upstream cost +x. One
    UpstreamCharge per interval, unique per (instance, period_start); idempotent by key."""
    now = now or timezone.now()
    query = ProvisionedInstance.objects.filter(
        Q(status__in=BILLED_STATUSES) | Q(terminated_at__gt=F("cost_accrued_until")),
        cost_accrued_until__isnull=False,
        upstream_price_per_hour__isnull=False,
    )
    if instance_ids is not None:
        query = query.filter(pk__in=instance_ids)
    booked = 0
    for instance_id in query.values_list("pk", flat=True):
        with transaction.atomic():
            instance = lock_instance(instance_id, skip_locked=True)
            if instance is None or instance.cost_accrued_until is None:
                continue
            if instance.status not in BILLED_STATUSES and instance.terminated_at is None:
                continue
            end = min(now, instance.terminated_at) if instance.terminated_at else now
            start = instance.cost_accrued_until
            seconds = int((end - start).total_seconds())
            if seconds < 1:
                continue
            period_end = start + timedelta(seconds=seconds)
            amount = prorate(per_hour=instance.upstream_price_per_hour or 0, seconds=seconds)
            pod_id = (
                Pod.objects.filter(node_id=instance.node_id, status__in=ON_NODE_STATUSES)
                .values_list("pk", flat=True)
                .first()
                if instance.node_id
                else None
            ) or instance.pod_id
            tx_id = None
            if amount:
                tx, _ = ledger_post(
                    kind=TransactionKind.USAGE,
                    idempotency_key=f"upstream:{instance.pk}:{start.isoformat()}",
                    memo=(
                        f"upstream {instance.provider} {instance.gpu_count}× {instance.gpu_model}: "
                        f"{seconds} s at ${micros_to_usd(instance.upstream_price_per_hour or 0)}/h"
                    )[:255],
                    lines=[
                        (platform_account(AccountKind.PLATFORM_REVENUE), -amount),
                        (platform_account(AccountKind.UPSTREAM_COST), amount),
                    ],
                    metadata={"instance": str(instance.pk), "pod": str(pod_id) if pod_id else None},
                )
                tx_id = tx.pk
            UpstreamCharge.objects.create(
                instance=instance,
                pod_id=pod_id,
                provider=instance.provider,
                gpu_model=instance.gpu_model,
                period_start=start,
                period_end=period_end,
                seconds=seconds,
                price_per_hour=instance.upstream_price_per_hour or 0,
                amount=amount,
                transaction_id=tx_id,
            )
            instance.cost_accrued_until = period_end
            instance.save(update_fields=["cost_accrued_until"])
            booked += 1
    return booked


def margins_by(*, key: str) -> dict[str, dict[str, int]]:
    """Revenue, upstream cost and margin per pod, provider or GPU model (micro-dollars)."""
    assert key in ("pod", "provider", "gpu_model")  # noqa: S101 - a programming error
    cost: dict[str, int] = defaultdict(int)
    revenue: dict[str, int] = defaultdict(int)
    sourced_pods = {}
    for row in UpstreamCharge.objects.values(key if key != "pod" else "pod_id").annotate(
        total=Sum("amount")
    ):
        cost[str(row[key if key != "pod" else "pod_id"])] += row["total"]
    # revenue of pods that ran on rented machines, attributed to the instance's provider/GPU
    rented = [
        *ProvisionedInstance.objects.exclude(node=None).values_list(
            "node__pods__id", "provider", "gpu_model"
        ),
        # a container cloud's rental is the pod itself
        *ProvisionedInstance.objects.filter(execution_model="container")
        .exclude(pod=None)
        .values_list("pod_id", "provider", "gpu_model"),
    ]
    for pod_id, provider, gpu in rented:
        if pod_id is not None:
            sourced_pods[pod_id] = {"pod": str(pod_id), "provider": provider, "gpu_model": gpu}[key]
    for row in (
        UsageRecord.objects.filter(pod_id__in=list(sourced_pods))
        .values("pod_id")
        .annotate(total=Sum("amount"))
    ):
        revenue[sourced_pods[row["pod_id"]]] += row["total"]
    keys = set(cost) | set(revenue)
    return {
        k: {"revenue": revenue[k], "upstream_cost": cost[k], "margin": revenue[k] - cost[k]}
        for k in sorted(keys)
    }
