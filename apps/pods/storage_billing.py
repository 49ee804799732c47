"""Volume storage billing: per GB-month, charged by the whole minute, while the volume exists
(from its creation to its DELETE), whatever its pods do — a stopped pod's volume keeps billing.

The charge is cumulative, so rounding never drifts: after `m` whole minutes a volume has cost
floor(size_gb × price_per_gb_month × m / 43 200) micro-dollars (a month is 30 days), and each
tick posts the difference from what was charged before. Each posting goes through the ledger
with an idempotency key (`volume-storage:<volume>:<minute>:<cumulative amount>`), and the
volume's `billed_minutes` and `billed_amount` move in the same database transaction, under the
volume's row lock: a tick run twice, or killed halfway, never charges a minute twice. A wallet
is never taken below its floor: what it cannot pay stays owed (the volume says so) and is
charged by a later tick once the balance allows. A community node's provider gets its tier's
share, as for GPU time."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.billing.locks import lock_accounts
from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import (
    ledger_post,
    platform_account,
    provider_payable,
    wallet_floor,
    wallet_for,
)
from apps.core.money import micros_to_usd
from apps.pods.locks import lock_volume_for_billing
from apps.pods.models import Volume
from apps.providers.fees import fee_percent_at, fee_schedules

logger = logging.getLogger(__name__)

MINUTES_PER_MONTH = 30 * 24 * 60


def storage_cost(*, size_gb: int, price_per_gb_month: int, minutes: int) -> int:
    """Micro-dollars owed for `minutes` whole minutes of a volume (rounded down)."""
    return size_gb * price_per_gb_month * minutes // MINUTES_PER_MONTH


@dataclass
class StorageTickResult:
    volumes: int = 0
    charged: int = 0


def _due(now: datetime) -> list[uuid.UUID]:
    """Volumes with at least one whole minute not yet billed."""
    return list(
        Volume.objects.filter(billing_closed=False, created_at__lte=now).values_list(
            "pk", flat=True
        )
    )


def volume_bill(*, volume_id: uuid.UUID, now: datetime) -> int:
    """Charge one volume up to the last whole minute before `now` (or its deletion); returns
    the micro-dollars charged."""
    with transaction.atomic():
        volume = lock_volume_for_billing(volume_id)
        if volume is None:
            return 0  # another tick holds it
        end = min(now, volume.deleted_at) if volume.deleted_at else now
        minutes = max(volume.billed_minutes, int((end - volume.created_at).total_seconds() // 60))
        closed = volume.deleted_at is not None and volume.deleted_at <= now
        total = storage_cost(
            size_gb=volume.size_gb, price_per_gb_month=volume.price_per_gb_month, minutes=minutes
        )
        due = total - volume.billed_amount  # new minutes, plus what a low balance left unpaid
        if due <= 0:
            if closed or minutes > volume.billed_minutes:
                Volume.objects.filter(pk=volume.pk).update(
                    billed_minutes=minutes, billing_closed=closed
                )
            return 0
        charged = _charge(volume=volume, due=due, minutes=minutes, end=end)
        billed = volume.billed_amount + charged
        unpaid = total - billed
        fields: dict[str, object] = {
            "billed_minutes": minutes,
            "billed_amount": billed,
            # A deleted volume's arrears are still collected once the balance allows.
            "billing_closed": closed and unpaid == 0,
        }
        if unpaid:
            fields["status_reason"] = (
                f"storage unpaid: ${micros_to_usd(unpaid, 6)} owed, charged as soon as the "
                "balance allows (top up)"
            )
        elif volume.status_reason.startswith("storage unpaid"):
            fields["status_reason"] = ""
        Volume.objects.filter(pk=volume.pk).update(**fields)
        return charged


def _charge(*, volume: Volume, due: int, minutes: int, end: datetime) -> int:
    """Post up to `due` micro-dollars from the owner's wallet, never below its floor (the
    wallet is locked first, so the room read is the room the posting gets); the amount
    charged."""
    wallet = wallet_for(volume.owner)
    room = lock_accounts([wallet.pk])[wallet.pk].balance - wallet_floor()
    amount = max(0, min(due, room))
    if amount == 0:
        return 0
    lines = [(wallet, -amount)]
    provider_id = volume.node.provider_id
    share = 0
    if provider_id is not None:
        fee = fee_percent_at(fee_schedules([provider_id]), provider_id, end)
        share = amount * (100 - fee) // 100
        if share:
            lines.append((provider_payable(provider_id), share))
    if amount - share:
        lines.append((platform_account(AccountKind.PLATFORM_REVENUE), amount - share))
    ledger_post(
        kind=TransactionKind.USAGE,
        # The cumulative amount after this posting names it: a retry of the same tick finds
        # it, a later tick (new minutes or arrears) has its own.
        idempotency_key=f"volume-storage:{volume.pk}:{minutes}:{volume.billed_amount + amount}",
        memo=f"Volume {volume.name}: {volume.size_gb} GB, minutes "
        f"{volume.billed_minutes}–{minutes}",
        lines=lines,
        floor=True,
        metadata={
            "volume_id": str(volume.pk),
            "size_gb": volume.size_gb,
            "price_per_gb_month": volume.price_per_gb_month,
            "from_minute": volume.billed_minutes,
            "to_minute": minutes,
            "provider_share": share,
        },
    )
    return amount


def storage_bill_tick(*, now: datetime | None = None) -> StorageTickResult:
    """Bill every volume that exists (or existed until a DELETE not yet billed to its end)."""
    now = now or timezone.now()
    result = StorageTickResult()
    for volume_id in _due(now):
        charged = volume_bill(volume_id=volume_id, now=now)
        if charged:
            result.volumes += 1
            result.charged += charged
    return result
