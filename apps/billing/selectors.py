"""Reads of the ledger that views and other apps share. Everything a user sees is scoped to
their own wallet here, so another user's data is unreachable by construction."""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import AccountKind, Entry, LedgerAccount, SpendLimit
from apps.billing.spend import WARN_AT_PERCENT, month_spent
from apps.core.money import micros_to_usd


def wallet_balance(user: User) -> int:
    """The user's balance in micro-dollars (0 before their first top-up)."""
    balance = (
        LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user=user)
        .values_list("balance", flat=True)
        .first()
    )
    return balance or 0


def wallet_entries(user: User, *, kind: str | None = None) -> QuerySet[Entry]:
    """The entries on the user's wallet, newest first, each with its transaction."""
    entries = Entry.objects.filter(
        account__kind=AccountKind.USER_WALLET, account__user=user
    ).select_related("transaction")
    if kind:
        entries = entries.filter(transaction__kind=kind)
    return entries.order_by("-id")


def wallet_statement(
    user: User,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Entry]:
    """`wallet_entries` within [since, until) of the transactions' time."""
    entries = wallet_entries(user, kind=kind)
    if since:
        entries = entries.filter(transaction__created_at__gte=since)
    if until:
        entries = entries.filter(transaction__created_at__lt=until)
    return entries


def spend_limits_summary(user: User) -> dict[str, Any]:
    """The user's spend limits and this month's usage, in dollars (None: no limit)."""
    limit = SpendLimit.objects.filter(user=user).first()
    cap = limit.monthly_cap if limit else None
    burn = limit.max_hourly_burn if limit else None
    spent = month_spent([user.pk], now=timezone.now()).get(user.pk, 0)
    return {
        "monthly_cap_usd": None if cap is None else micros_to_usd(cap),
        "max_hourly_burn_usd": None if burn is None else micros_to_usd(burn),
        "month_spent_usd": micros_to_usd(spent),
        "warning_at_percent": WARN_AT_PERCENT,
    }
