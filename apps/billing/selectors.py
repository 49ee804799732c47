"""Reads of the ledger that views and other apps share. Everything a user sees is scoped to
their own wallet here, so another user's data is unreachable by construction."""

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.billing.models import AccountKind, Entry, LedgerAccount


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
