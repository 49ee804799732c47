"""Spend controls, read by the metering tick (which caps charges and stops pods) and by pod
creation (which refuses new work), so both apply one rule."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Sum
from django.utils import timezone

from apps.billing.models import (
    AccountKind,
    Entry,
    LedgerAccount,
    SpendLimit,
    TransactionKind,
)
from apps.billing.services.ledger import wallet_floor
from apps.core.money import micros_to_usd

WARN_AT_PERCENT = 80


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spent(owner_ids: Iterable[uuid.UUID], *, now: datetime) -> dict[uuid.UUID, int]:
    """Usage charged to each owner's wallet since the start of `now`'s month (one query)."""
    owners = list(owner_ids)
    if not owners:
        return {}
    rows = (
        Entry.objects.filter(
            account__kind=AccountKind.USER_WALLET,
            account__user_id__in=owners,
            transaction__kind=TransactionKind.USAGE,
            transaction__created_at__gte=month_start(now),
        )
        .values("account__user_id")
        .annotate(total=Sum("amount"))
    )
    return {r["account__user_id"]: -r["total"] for r in rows}


@dataclass
class SpendState:
    """What one user may still be charged."""

    balance_left: int  # down to the overdraft floor
    month_spent: int
    monthly_cap: int | None
    max_hourly_burn: int | None
    warned_month: str

    @property
    def cap_left(self) -> int | None:
        return None if self.monthly_cap is None else max(0, self.monthly_cap - self.month_spent)

    @property
    def chargeable(self) -> int:
        """The most that may be charged now: the balance above the floor, within the cap."""
        left = max(0, self.balance_left)
        return left if self.cap_left is None else min(left, self.cap_left)


def spend_states(
    owner_ids: Iterable[uuid.UUID], *, now: datetime, balances: dict[uuid.UUID, int]
) -> dict[uuid.UUID, SpendState]:
    """Spend state for each owner; `balances` are their wallets' balances (read under lock
    by the caller). Two queries, whatever the number of owners."""
    owners = list(owner_ids)
    limits = {s.user_id: s for s in SpendLimit.objects.filter(user_id__in=owners)}
    spent = month_spent([o for o, s in limits.items() if s.monthly_cap is not None], now=now)
    floor = wallet_floor()
    return {
        owner: SpendState(
            balance_left=balances.get(owner, 0) - floor,
            month_spent=spent.get(owner, 0),
            monthly_cap=limits[owner].monthly_cap if owner in limits else None,
            max_hourly_burn=limits[owner].max_hourly_burn if owner in limits else None,
            warned_month=limits[owner].warned_month if owner in limits else "",
        )
        for owner in owners
    }


def spend_refusal(*, user_id: uuid.UUID, current_burn: int) -> str | None:
    """Why new work must be refused for this user now, or None."""
    wallet = LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user_id=user_id).first()
    balance = wallet.balance if wallet else 0
    state = spend_states([user_id], now=timezone.now(), balances={user_id: balance})[user_id]
    if state.balance_left <= 0:
        return f"Your balance is ${micros_to_usd(balance)}; top up before starting new work."
    if state.cap_left == 0:
        return (
            f"Your monthly spend cap of ${micros_to_usd(state.monthly_cap or 0)} is reached; "
            "raise it or wait for next month."
        )
    if state.max_hourly_burn is not None and current_burn >= state.max_hourly_burn:
        return (
            f"Your running pods already cost ${micros_to_usd(current_burn)}/h, at your maximum "
            f"hourly burn of ${micros_to_usd(state.max_hourly_burn)}/h."
        )
    return None
