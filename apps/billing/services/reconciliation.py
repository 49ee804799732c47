"""Daily reconciliation of the ledger against Stripe: every successful Stripe charge in a window
should have credited a wallet (a TOPUP whose metadata names its payment intent, for the same
amount), every Stripe top-up in the ledger should have its charge, and every Stripe refund
should have a ledger refund (external ref `stripe:refund:<id>`) and the reverse. What is
missing on either side is recorded for operators and logged as an error; nothing is posted.

Each side is matched against the other over a wider span than the window (three days before
it, an hour after, then by key anywhere), since a webhook can credit a charge days after it was made
(Stripe retries for three days): an item is reported only when it is in the window and its
counterpart is nowhere in that span."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum

from apps.billing.models import (
    AccountKind,
    MismatchKind,
    ReconciliationMismatch,
    StripeReconciliation,
    Transaction,
    TransactionKind,
)
from apps.billing.services.topups import MICROS_PER_CENT, stripe_client

logger = logging.getLogger(__name__)

# How far before the window a counterpart may lie (a webhook credited days after the charge).
SLACK_BEFORE = timedelta(days=3)
SLACK_AFTER = timedelta(hours=1)
STRIPE_TOPUP_REF = "stripe:checkout_session:"
STRIPE_REFUND_REF = "stripe:refund:"


@dataclass(frozen=True)
class _StripeItem:
    stripe_id: str
    payment_intent: str | None
    amount: int  # micro-dollars
    created: datetime


@dataclass(frozen=True)
class _LedgerItem:
    transaction: Transaction
    key: str | None  # the payment intent (top-ups) or refund id (refunds)
    amount: int  # micro-dollars moved into (top-up) or out of (refund) Stripe clearing


def _stripe_list(resource: str, start: datetime, end: datetime) -> Iterator[Any]:
    """Every object of a Stripe list endpoint created in [start, end), all pages."""
    service = getattr(stripe_client().v1, resource)
    params = {
        "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
        "limit": 100,
    }
    yield from service.list(params=params).auto_paging_iter()


def _stripe_items(resource: str, start: datetime, end: datetime) -> list[_StripeItem]:
    items = []
    for listed in _stripe_list(resource, start, end):
        obj = listed.to_dict()
        if obj.get("status") != "succeeded" or obj.get("currency") != "usd":
            continue
        if resource == "charges" and not obj.get("paid"):
            continue
        items.append(
            _StripeItem(
                stripe_id=obj["id"],
                payment_intent=obj.get("payment_intent"),
                amount=int(obj["amount"]) * MICROS_PER_CENT,
                created=datetime.fromtimestamp(obj["created"], tz=start.tzinfo),
            )
        )
    return items


def _ledger_items(kind: str, ref_prefix: str, match: Q) -> list[_LedgerItem]:
    rows = (
        Transaction.objects.filter(match, kind=kind, external_ref__startswith=ref_prefix)
        .annotate(
            clearing=Sum(
                "entries__amount",
                filter=Q(entries__account__kind=AccountKind.STRIPE_CLEARING),
            )
        )
        .order_by("pk")
    )
    items = []
    for tx in rows:
        if kind == TransactionKind.TOPUP:
            key = (tx.metadata or {}).get("stripe_payment_intent")
            amount = -(tx.clearing or 0)
        else:
            key = (tx.external_ref or "").removeprefix(ref_prefix)
            amount = tx.clearing or 0
        items.append(_LedgerItem(transaction=tx, key=key, amount=amount))
    return items


def _in(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment < end


def stripe_reconcile(*, start: datetime, end: datetime) -> StripeReconciliation:
    """Compare Stripe with the ledger over [start, end) and record what does not match (a rerun
    of the same window replaces its report). Raises StripeNotConfiguredError without a key,
    stripe.StripeError when Stripe cannot be read (nothing is recorded then)."""
    if end <= start:
        raise ValueError("The window must end after it starts.")
    wide_start, wide_end = start - SLACK_BEFORE, end + SLACK_AFTER
    charges = _stripe_items("charges", wide_start, wide_end)
    refunds = _stripe_items("refunds", wide_start, wide_end)
    wide = Q(created_at__gte=wide_start, created_at__lt=wide_end)
    topups = _ledger_items(TransactionKind.TOPUP, STRIPE_TOPUP_REF, wide)
    ledger_refunds = _ledger_items(TransactionKind.REFUND, STRIPE_REFUND_REF, wide)
    topup_by_intent = {t.key: t for t in topups if t.key}
    ledger_refund_ids = {r.key for r in ledger_refunds}
    # A charge or refund may reach the ledger after the wide span: look those up by key.
    unmatched = [c.payment_intent for c in charges if c.payment_intent not in topup_by_intent]
    if unmatched:
        late = Q(metadata__stripe_payment_intent__in=unmatched)
        for t in _ledger_items(TransactionKind.TOPUP, STRIPE_TOPUP_REF, late):
            if t.key:
                topup_by_intent.setdefault(t.key, t)
    unmatched = [r.stripe_id for r in refunds if r.stripe_id not in ledger_refund_ids]
    if unmatched:
        late = Q(external_ref__in=[f"{STRIPE_REFUND_REF}{i}" for i in unmatched])
        ledger_refund_ids |= {
            r.key for r in _ledger_items(TransactionKind.REFUND, STRIPE_REFUND_REF, late)
        }
    charge_by_intent = {c.payment_intent: c for c in charges if c.payment_intent}
    refund_ids = {r.stripe_id for r in refunds}

    found: list[ReconciliationMismatch] = []
    for charge in charges:
        if not _in(charge.created, start, end):
            continue
        topup = topup_by_intent.get(charge.payment_intent or "")
        if topup is None:
            found.append(
                ReconciliationMismatch(
                    kind=MismatchKind.CHARGE_NOT_IN_LEDGER,
                    stripe_id=charge.stripe_id,
                    stripe_amount=charge.amount,
                    detail=f"payment intent {charge.payment_intent}: no wallet was credited",
                )
            )
        elif topup.amount != charge.amount:
            found.append(
                ReconciliationMismatch(
                    kind=MismatchKind.AMOUNT_DIFFERS,
                    stripe_id=charge.stripe_id,
                    transaction=topup.transaction,
                    stripe_amount=charge.amount,
                    ledger_amount=topup.amount,
                    detail=f"payment intent {charge.payment_intent}",
                )
            )
    for topup in topups:
        if not _in(topup.transaction.created_at, start, end):
            continue
        if topup.key is None or topup.key not in charge_by_intent:
            found.append(
                ReconciliationMismatch(
                    kind=MismatchKind.TOPUP_NOT_IN_STRIPE,
                    stripe_id=topup.key or "",
                    transaction=topup.transaction,
                    ledger_amount=topup.amount,
                    detail=f"{topup.transaction.external_ref}: no successful Stripe charge",
                )
            )
    for refund in refunds:
        if _in(refund.created, start, end) and refund.stripe_id not in ledger_refund_ids:
            found.append(
                ReconciliationMismatch(
                    kind=MismatchKind.REFUND_NOT_IN_LEDGER,
                    stripe_id=refund.stripe_id,
                    stripe_amount=refund.amount,
                    detail=f"payment intent {refund.payment_intent}: no wallet was debited",
                )
            )
    for ledger_refund in ledger_refunds:
        created = ledger_refund.transaction.created_at
        if _in(created, start, end) and ledger_refund.key not in refund_ids:
            found.append(
                ReconciliationMismatch(
                    kind=MismatchKind.REFUND_NOT_IN_STRIPE,
                    stripe_id=ledger_refund.key or "",
                    transaction=ledger_refund.transaction,
                    ledger_amount=ledger_refund.amount,
                    detail="no successful Stripe refund",
                )
            )

    with transaction.atomic():
        report, _ = StripeReconciliation.objects.update_or_create(
            window_start=start,
            window_end=end,
            defaults={
                "stripe_charges": sum(_in(c.created, start, end) for c in charges),
                "stripe_refunds": sum(_in(r.created, start, end) for r in refunds),
                "ledger_topups": sum(_in(t.transaction.created_at, start, end) for t in topups),
                "ledger_refunds": sum(
                    _in(r.transaction.created_at, start, end) for r in ledger_refunds
                ),
            },
        )
        report.mismatches.all().delete()
        for mismatch in found:
            mismatch.reconciliation = report
        ReconciliationMismatch.objects.bulk_create(found)
    for mismatch in found:
        logger.error(
            "stripe reconciliation %s–%s: %s %s (Stripe %s, ledger %s) %s",
            start.isoformat(),
            end.isoformat(),
            mismatch.get_kind_display(),
            mismatch.stripe_id or f"transaction {mismatch.transaction_id}",
            mismatch.stripe_amount,
            mismatch.ledger_amount,
            mismatch.detail,
        )
    return report
