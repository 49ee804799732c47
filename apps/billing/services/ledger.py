"""Posting to the ledger, the accounts it posts to, and the consistency check (DESIGN.md §3)."""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

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
from apps.core.bulk_sql import insert_rows, insert_rows_returning_ids

logger = logging.getLogger(__name__)

# One leg of a posting: an account (or its pk) and a signed amount of micro-dollars.
Line = tuple[LedgerAccount | int, int]


_KINDS = frozenset(TransactionKind.values)


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


@dataclass(frozen=True)
class Posting:
    """One balanced movement of money for `ledger_post_many`: `lines` are (account or account
    pk, signed micro-dollars) summing to zero; `idempotency_key` names the movement, so a
    retry finds the first posting instead of making a second. `external_ref` names the
    outside object it settles (two keys cannot settle it twice). `created_at` records a past
    movement at its own time (None: now)."""

    kind: str
    idempotency_key: str
    memo: str
    lines: Sequence[Line]
    external_ref: str | None = None
    created_by: User | None = None
    reason: str = ""
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Posted:
    """What became of one posting: its transaction's pk, and False when the key (or external
    ref) had been posted before, so nothing was written for it."""

    transaction_id: int
    created: bool


def _account_pk(account: LedgerAccount | int) -> int:
    if type(account) is int:  # the batch path's common case, checked first
        return account
    if isinstance(account, LedgerAccount):
        if account.pk is None:
            raise LedgerError("Post only to saved accounts.")
        return int(account.pk)
    if isinstance(account, bool) or not isinstance(account, int):
        raise LedgerError(f"An account is a LedgerAccount or its pk, not {account!r}.")
    return account


def _validate(posting: Posting) -> dict[int, int]:
    """Net change per account pk; raises if the posting cannot make a transaction. This is the
    zero-sum check in code, on every database (Postgres checks again at commit)."""
    if posting.kind not in _KINDS:
        raise LedgerError(f"Unknown transaction kind {posting.kind!r}.")
    if not posting.idempotency_key:
        raise LedgerError("An idempotency key is required.")
    if len(posting.lines) < 2:
        raise UnbalancedPostingError("A transaction needs at least two lines.")
    net: dict[int, int] = defaultdict(int)
    total = 0
    for account, amount in posting.lines:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise LedgerError(f"Amounts are int micro-dollars, not {type(amount).__name__}.")
        if amount == 0:
            raise LedgerError("A line cannot move zero.")
        net[_account_pk(account)] += amount
        total += amount
    if total != 0:
        raise UnbalancedPostingError(f"Lines sum to {total}, not zero.")
    return dict(net)


def _existing(postings: Sequence[Posting]) -> dict[str, Transaction]:
    """Transactions already posted under the postings' keys or external refs, by the key or
    ref they match."""
    keys = [p.idempotency_key for p in postings]
    refs = [p.external_ref for p in postings if p.external_ref is not None]
    rows: Iterable[tuple[int, str, str, str | None]]
    if connection.vendor == "postgresql":
        # Two array parameters, however large the batch (an IN list of 10,000 placeholders
        # costs more to build and parse than the lookup itself).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, kind, idempotency_key, external_ref FROM billing_transaction "
                "WHERE idempotency_key = ANY(%s) OR external_ref = ANY(%s)",
                [keys, refs],
            )
            rows = cursor.fetchall()
    else:
        match = Q(idempotency_key__in=keys)
        if refs:
            match |= Q(external_ref__in=refs)
        rows = Transaction.objects.filter(match).values_list(
            "pk", "kind", "idempotency_key", "external_ref"
        )
    found: dict[str, Transaction] = {}
    for pk, kind, key, ref in rows:
        tx = Transaction(pk=pk, kind=kind, idempotency_key=key, external_ref=ref)
        found[tx.idempotency_key] = tx
        if tx.external_ref is not None:
            found[tx.external_ref] = tx
    return found


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


def _insert(postings: Sequence[Posting]) -> list[int]:
    """Insert the postings' transactions and entries (COPY on Postgres); the database moves
    the cached balances (migration 0005). Returns the transactions' pks in order."""
    fields = ["kind", "idempotency_key", "external_ref", "memo"]
    rows: list[list[Any]] = [
        [p.kind, p.idempotency_key, p.external_ref, p.memo[:255]] for p in postings
    ]
    # Columns no posting sets keep their database defaults (created_at: the database's now).
    optional: list[tuple[str, Callable[[Posting], Any]]] = [
        ("created_by_id", lambda p: None if p.created_by is None else p.created_by.pk),
        ("reason", lambda p: p.reason),
        ("metadata", lambda p: p.metadata or {}),
        ("created_at", lambda p: p.created_at or timezone.now()),
    ]
    for name, value in optional:
        if any(getattr(p, name.removesuffix("_id")) for p in postings):
            fields.append(name)
            for row, p in zip(rows, postings, strict=True):
                row.append(value(p))
    tx_ids = insert_rows_returning_ids(model=Transaction, fields=fields, rows=rows)
    entries = [
        [tx_id, _account_pk(account), amount]
        for tx_id, p in zip(tx_ids, postings, strict=True)
        for account, amount in p.lines
    ]
    if sum(amount for _, _, amount in entries) != 0:  # a last look before they are written
        raise UnbalancedPostingError("The batch's entries do not sum to zero.")
    insert_rows(model=Entry, fields=["transaction", "account", "amount"], rows=entries)
    return tx_ids


def ledger_post_many(*, postings: Sequence[Posting], floor: bool = False) -> list[Posted]:
    """Post many balanced transactions at once: the one way money is written. Each posting is
    validated (kind, key, at least two non-zero int lines summing to zero) before anything is
    written; keys (and external refs) must be distinct within the batch.

    One database transaction: every account the batch touches is locked in pk order (the
    ledger's one lock order), postings whose key or external ref was posted before are
    skipped (Posted.created False; a different movement under a reused key is logged), the
    rest inserted set-based, and the database moves the cached balances. With `floor=True` a
    wallet the batch lowers may not end below `wallet_floor()` (InsufficientFundsError, and
    nothing is written). Returns one Posted per posting, in order."""
    if not postings:
        return []
    nets = [_validate(p) for p in postings]
    names = [p.idempotency_key for p in postings]
    names += [p.external_ref for p in postings if p.external_ref is not None]
    if len(set(names)) != len(names):
        raise LedgerError("Two postings of one batch share an idempotency key or external ref.")
    account_ids = {pk for net in nets for pk in net}

    with transaction.atomic():
        locked = lock_accounts(account_ids)
        if len(locked) != len(account_ids):
            raise LedgerError("A line names an account that does not exist.")
        for _attempt in range(3):
            existing = _existing(postings)
            results: list[Posted | None] = []
            new: list[Posting] = []
            change: dict[int, int] = defaultdict(int)
            for posting, net in zip(postings, nets, strict=True):
                first = existing.get(posting.idempotency_key) or (
                    existing.get(posting.external_ref) if posting.external_ref else None
                )
                if first is not None:
                    _warn_if_different(first, posting.kind, net)
                    results.append(Posted(first.pk, False))
                    continue
                results.append(None)
                new.append(posting)
                for account_id, amount in net.items():
                    change[account_id] += amount
            if floor:
                _check_floor(locked, change)
            try:
                # A savepoint: a concurrent poster's key committed since our look leaves our
                # transaction usable, and the next attempt sees it (READ COMMITTED).
                with transaction.atomic():
                    tx_ids = iter(_insert(new))
                break
            except IntegrityError:
                if _attempt == 2:
                    raise
        posted = [r if r is not None else Posted(next(tx_ids), True) for r in results]

    # The callers' account objects now show the balance this batch left (read under lock).
    for posting in postings:
        for account, _ in posting.lines:
            if isinstance(account, LedgerAccount):
                account.balance = locked[account.pk].balance + change.get(account.pk, 0)
    return posted


def _check_floor(locked: dict[int, LedgerAccount], change: dict[int, int]) -> None:
    minimum = wallet_floor()
    for account_id, delta in change.items():
        account = locked[account_id]
        lowered = account.kind == AccountKind.USER_WALLET and delta < 0
        if lowered and account.balance + delta < minimum:
            raise InsufficientFundsError(
                account=account, balance=account.balance, change=delta, floor=minimum
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
    created_at: datetime | None = None,
) -> tuple[Transaction, bool]:
    """Post one balanced transaction (`ledger_post_many` with one posting): `lines` are
    (account, signed micro-dollars), summing to zero. Returns (transaction, True), or (the
    first transaction, False) when `idempotency_key` (or `external_ref`) was posted before,
    changing nothing. With `floor=True` a wallet that a line lowers may not end below
    `wallet_floor()` (InsufficientFundsError)."""
    [posted] = ledger_post_many(
        postings=[
            Posting(
                kind=kind,
                idempotency_key=idempotency_key,
                memo=memo,
                lines=lines,
                external_ref=external_ref,
                created_by=created_by,
                reason=reason,
                metadata=metadata,
                created_at=created_at,
            )
        ],
        floor=floor,
    )
    return Transaction.objects.get(pk=posted.transaction_id), posted.created


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


def wallet_ids_for(user_ids: Iterable[UUID]) -> dict[UUID, int]:
    """Wallet pks by user for many users at once, creating the missing wallets in one
    statement (a concurrent creator wins quietly: the unique constraint decides)."""
    wanted = set(user_ids)
    return _account_ids(AccountKind.USER_WALLET, "user_id", wanted)


def payable_ids_for(provider_ids: Iterable[UUID]) -> dict[UUID, int]:
    """Payable pks by provider for many community providers at once, created as needed."""
    return _account_ids(AccountKind.PROVIDER_PAYABLE, "provider_id", set(provider_ids))


def _account_ids(kind: str, owner: str, wanted: set[UUID]) -> dict[UUID, int]:
    def known() -> dict[UUID, int]:
        rows = LedgerAccount.objects.filter(kind=kind, **{f"{owner}__in": wanted})
        return dict(rows.values_list(owner, "pk"))

    found = known()
    if len(found) < len(wanted):
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=kind, **{owner: o}) for o in wanted - set(found)],
            ignore_conflicts=True,
        )
        found = known()
    return found


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
