"""Posting to the ledger, the accounts it posts to, and the consistency check (DESIGN.md §3)."""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce

from apps.accounts.models import User
from apps.billing.locks import lock_accounts
from apps.billing.models import (
    PLATFORM_KINDS,
    AccountKind,
    Entry,
    LedgerAccount,
    Transaction,
    TransactionKind,
)

logger = logging.getLogger(__name__)

Line = tuple[LedgerAccount, int]


class LedgerError(ValueError):
    """A posting that the ledger refuses; nothing was written."""


class UnbalancedPostingError(LedgerError):
    pass


class InsufficientFundsError(LedgerError):
    """A wallet would end below its floor (minus BILLING_OVERDRAFT_MICROS)."""

    def __init__(self, *, account: LedgerAccount, balance: int, change: int, floor: int) -> None:
        self.account = account
        self.balance = balance
        self.change = change
        self.floor = floor
        super().__init__(
            f"{account} holds {balance} micro-dollars; a change of {change} would take it "
            f"below its floor of {floor}."
        )


def wallet_floor() -> int:
    """The lowest balance (micro-dollars) a wallet may be taken to by a guarded posting."""
    return -int(settings.BILLING_OVERDRAFT_MICROS)


def _validate(lines: Sequence[Line]) -> dict[int, int]:
    """Net change per account pk; raises if the lines cannot make a transaction."""
    if len(lines) < 2:
        raise UnbalancedPostingError("A transaction needs at least two lines.")
    net: dict[int, int] = defaultdict(int)
    for account, amount in lines:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise LedgerError(f"Amounts are int micro-dollars, not {type(amount).__name__}.")
        if amount == 0:
            raise LedgerError("A line cannot move zero.")
        if account.pk is None:
            raise LedgerError("Post only to saved accounts.")
        net[account.pk] += amount
    total = sum(amount for _, amount in lines)
    if total != 0:
        raise UnbalancedPostingError(f"Lines sum to {total}, not zero.")
    return dict(net)


def _existing(idempotency_key: str, external_ref: str | None) -> Transaction | None:
    match = Q(idempotency_key=idempotency_key)
    if external_ref is not None:
        match |= Q(external_ref=external_ref)
    return Transaction.objects.filter(match).order_by("pk").first()


def _warn_if_different(existing: Transaction, kind: str, net: dict[int, int]) -> None:
    """A key reused for a different movement is a caller's bug: keep the first posting (the
    key's promise) but say so."""
    posted: dict[int, int] = defaultdict(int)
    for account_id, amount in existing.entries.values_list("account_id", "amount"):
        posted[account_id] += amount
    if existing.kind != kind or dict(posted) != net:
        logger.warning(
            "ledger: key %r (or its external ref) was first posted as transaction %s with "
            "different lines; the repeat was ignored",
            existing.idempotency_key,
            existing.pk,
        )


def ledger_post(
    *,
    kind: str,
    idempotency_key: str,
    memo: str,
    lines: Sequence[Line],
    created_by: User | None = None,
    reason: str = "",
    metadata: dict[str, Any] | None = None,
    floor: bool = False,
    external_ref: str | None = None,
) -> tuple[Transaction, bool]:
    """Post one balanced transaction: `lines` are (account, signed micro-dollars), summing to
    zero. Returns (transaction, True), or (the first transaction, False) when
    `idempotency_key` (or `external_ref`) was posted before, changing nothing.

    With `floor=True` a wallet that a line lowers may not end below `wallet_floor()`
    (InsufficientFundsError). One database transaction: the accounts are locked in pk order,
    the transaction and its entries inserted, and each cached balance moved by an UPDATE."""
    if kind not in TransactionKind.values:
        raise LedgerError(f"Unknown transaction kind {kind!r}.")
    if not idempotency_key:
        raise LedgerError("An idempotency key is required.")
    net = _validate(lines)

    existing = _existing(idempotency_key, external_ref)
    if existing is not None:
        _warn_if_different(existing, kind, net)
        return existing, False

    with transaction.atomic():
        locked = lock_accounts(net)
        if len(locked) != len(net):
            raise LedgerError("A line names an account that does not exist.")
        if floor:
            minimum = wallet_floor()
            for account_id, change in net.items():
                account = locked[account_id]
                if (
                    account.kind == AccountKind.USER_WALLET
                    and change < 0
                    and account.balance + change < minimum
                ):
                    raise InsufficientFundsError(
                        account=account, balance=account.balance, change=change, floor=minimum
                    )
        try:
            # A savepoint, so a concurrent poster's unique key leaves our transaction usable.
            with transaction.atomic():
                posted = Transaction.objects.create(
                    kind=kind,
                    idempotency_key=idempotency_key,
                    external_ref=external_ref,
                    memo=memo[:255],
                    created_by=created_by,
                    reason=reason,
                    metadata=metadata or {},
                )
        except IntegrityError:
            # Same key (or external ref) committed by a concurrent call between our first look
            # and our insert: READ COMMITTED lets this query see it.
            existing = _existing(idempotency_key, external_ref)
            if existing is None:
                raise
            _warn_if_different(existing, kind, net)
            return existing, False
        Entry.objects.bulk_create(
            Entry(transaction=posted, account_id=account.pk, amount=amount)
            for account, amount in lines
        )
        for account_id, change in net.items():
            if change:
                LedgerAccount.objects.filter(pk=account_id).update(balance=F("balance") + change)

    # The callers' account objects now show the balance this posting left (read under lock).
    for account, _ in lines:
        account.balance = locked[account.pk].balance + net[account.pk]
    return posted, True


def wallet_for(user: User) -> LedgerAccount:
    """The user's wallet, created on first use (race-safe: the unique wallet-per-user
    constraint decides, and get_or_create re-reads after losing)."""
    account, _ = LedgerAccount.objects.get_or_create(kind=AccountKind.USER_WALLET, user=user)
    return account


def platform_account(kind: str) -> LedgerAccount:
    """The platform's one account of `kind` (revenue, upstream cost, Stripe or payouts
    clearing), created on first use."""
    if kind not in PLATFORM_KINDS:
        raise LedgerError(f"{kind!r} is not a platform account kind.")
    account, _ = LedgerAccount.objects.get_or_create(kind=kind)
    return account


def provider_payable(provider_id: UUID | str) -> LedgerAccount:
    """What the platform owes one community provider, created on first use."""
    account, _ = LedgerAccount.objects.get_or_create(
        kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider_id
    )
    return account


@dataclass(frozen=True)
class LedgerMismatch:
    """One broken invariant: `what` is `account_balance` (cached balance ≠ sum of entries),
    `transaction_sum` (entries do not sum to zero) or `transaction_legs` (fewer than two)."""

    what: str
    object_id: int
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"{self.what} {self.object_id}: expected {self.expected}, found {self.actual}"


def ledger_check() -> list[LedgerMismatch]:
    """Compare every account's cached balance with the sum of its entries, and check that every
    transaction has two or more entries summing to zero. Each query reads one snapshot, and a
    posting writes entries and balances in one transaction, so concurrent postings never show
    up as false mismatches."""
    found: list[LedgerMismatch] = []
    accounts = (
        LedgerAccount.objects.annotate(entry_sum=Coalesce(Sum("entries__amount"), Value(0)))
        .exclude(balance=F("entry_sum"))
        .values_list("pk", "entry_sum", "balance")
    )
    for pk, entry_sum, balance in accounts:
        found.append(LedgerMismatch("account_balance", pk, entry_sum, balance))
    transactions = (
        Transaction.objects.annotate(
            total=Coalesce(Sum("entries__amount"), Value(0)), legs=Count("entries")
        )
        .filter(~Q(total=0) | Q(legs__lt=2))
        .values_list("pk", "total", "legs")
    )
    for pk, total, legs in transactions:
        if total != 0:
            found.append(LedgerMismatch("transaction_sum", pk, 0, total))
        if legs < 2:
            found.append(LedgerMismatch("transaction_legs", pk, 2, legs))
    return found
