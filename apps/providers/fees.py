"""The platform fee of each provider over time, read in bulk for billing.

Billing charges an interval at the fee in force when the interval started (the last
`ProviderFee` whose `effective_from` is at or before the interval's start), so a tier change
applies to usage after it and never to usage before it. A node whose provider id names no
provider (or a provider without fee history) pays PROVIDER_DEFAULT_FEE_PERCENT, the Basic
tier's fee."""

import bisect
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from apps.providers.models import ProviderFee


@dataclass
class FeeSchedule:
    """One provider's fee changes, oldest first."""

    starts: list[datetime] = field(default_factory=list)
    percents: list[int] = field(default_factory=list)

    def at(self, when: datetime) -> int:
        i = bisect.bisect_right(self.starts, when) - 1
        if i < 0:
            # Usage before the first recorded fee (a node moved under a provider by an
            # operator, say) pays the first fee the provider had.
            return self.percents[0] if self.percents else default_fee_percent()
        return self.percents[i]


def default_fee_percent() -> int:
    return int(settings.PROVIDER_DEFAULT_FEE_PERCENT)


def fee_schedules(provider_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, FeeSchedule]:
    """Fee schedules for `provider_ids`, in one query. Providers without history are absent
    (callers use `default_fee_percent()`)."""
    ids = set(provider_ids)
    schedules: dict[uuid.UUID, FeeSchedule] = defaultdict(FeeSchedule)
    if not ids:
        return {}
    rows = (
        ProviderFee.objects.filter(provider_id__in=ids)
        .order_by("provider_id", "effective_from", "id")
        .values_list("provider_id", "effective_from", "fee_percent")
    )
    for provider_id, starts, percent in rows:
        schedule = schedules[provider_id]
        if schedule.starts and schedule.starts[-1] == starts:
            schedule.percents[-1] = percent  # the later row of the same instant wins
            continue
        schedule.starts.append(starts)
        schedule.percents.append(percent)
    return dict(schedules)


def fee_percent_at(
    schedules: dict[uuid.UUID, FeeSchedule], provider_id: uuid.UUID, when: datetime
) -> int:
    schedule = schedules.get(provider_id)
    return schedule.at(when) if schedule is not None else default_fee_percent()
