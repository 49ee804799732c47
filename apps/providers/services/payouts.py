"""Payouts: request, approve or reject, send through the method's gateway, settle (paid or
failed). The ledger carries every step:

    request:   provider payable  −a   payouts clearing  +a   (no longer available)
    paid:      payouts clearing  −a   payouts sent      +a   (the money left us)
    returned:  payouts clearing  −a   provider payable  +a   (failed or rejected: available again)

so "available" is derived from the payable's ledger balance less the hold on fresh earnings,
and a request decides it under the payable's row lock: two concurrent requests serialise, and
the second sees what the first took."""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.locks import lock_accounts
from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, provider_payable
from apps.core.money import micros_to_usd
from apps.providers.addresses import AddressError, check_tx_hash
from apps.providers.gateways import GatewayError, SettlementState, gateway_for
from apps.providers.lifecycle import IllegalPayoutTransitionError, payout_transition
from apps.providers.locks import lock_payout
from apps.providers.models import Payout, PayoutMethod, PayoutStatus, Provider
from apps.providers.selectors import Balances, provider_balances

logger = logging.getLogger(__name__)

MICROS_PER_CENT = 10_000
# A payout stuck in PROCESSING this long (a worker died mid-send) is sent again; the gateway
# deduplicates on the payout id.
STALE_PROCESSING = timedelta(minutes=10)


class PayoutError(ValueError):
    """The payout operation is not allowed; `field` names the input at fault, if any."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InsufficientAvailableError(PayoutError):
    def __init__(self, *, amount: int, balances: Balances) -> None:
        self.balances = balances
        super().__init__(
            f"You asked for ${micros_to_usd(amount, 6)} but ${micros_to_usd(balances.available, 6)}"
            f" is available (${micros_to_usd(balances.held, 6)} of recent earnings is still"
            " on hold).",
            field="amount_usd",
        )


class IdempotencyConflictError(PayoutError):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class RequestedPayout:
    payout: Payout
    created: bool  # False: an earlier request with the same key


def _request_hash(amount: int, method: str, details: dict[str, Any]) -> str:
    blob = json.dumps([amount, method, details], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _same_key(provider: Provider, key: str, digest: str) -> Payout | None:
    existing = Payout.objects.filter(provider=provider, idempotency_key=key).first()
    if existing is not None and existing.request_hash != digest:
        raise IdempotencyConflictError(
            "This Idempotency-Key was used with a different payout request."
        )
    return existing


def payout_request(
    *,
    provider: Provider,
    amount: int,
    method: str,
    details: dict[str, Any],
    idempotency_key: str = "",
    now: datetime | None = None,
) -> RequestedPayout:
    """Ask to be paid `amount` micro-dollars (whole cents, at least PAYOUT_MINIMUM_MICROS, at
    most what is available) by `method` to `details` (validated by the caller). The same
    `idempotency_key` and request return the first payout; with another request it is an
    IdempotencyConflictError. Without a key, one is made up (no deduplication)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise PayoutError(
            "The amount must be a positive number of micro-dollars.", field="amount_usd"
        )
    if amount % MICROS_PER_CENT:
        raise PayoutError("Payouts are in whole cents.", field="amount_usd")
    minimum = int(settings.PAYOUT_MINIMUM_MICROS)
    if amount < minimum:
        raise PayoutError(f"The smallest payout is ${micros_to_usd(minimum)}.", field="amount_usd")
    if method not in PayoutMethod.values:
        raise PayoutError("CRYPTO or PAYPAL.", field="method")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    digest = _request_hash(amount, method, details)
    existing = _same_key(provider, key, digest)
    if existing is not None:
        return RequestedPayout(existing, created=False)

    payable = provider_payable(provider.pk)
    clearing = platform_account(AccountKind.PAYOUTS_CLEARING)
    with transaction.atomic():
        # The race this lock prevents: two requests each reading the same available balance
        # and both passing the check, together paying out more than was earned. Both accounts
        # in the ledger's one order (pk), as ledger_post will lock them again.
        locked = lock_accounts([payable.pk, clearing.pk])
        existing = _same_key(provider, key, digest)  # a concurrent twin committed meanwhile
        if existing is not None:
            return RequestedPayout(existing, created=False)
        balances = provider_balances(provider, now=now, payable=locked[payable.pk].balance)
        if amount > balances.available:
            raise InsufficientAvailableError(amount=amount, balances=balances)
        try:
            with transaction.atomic():
                payout = Payout.objects.create(
                    provider=provider,
                    amount=amount,
                    method=method,
                    details=details,
                    idempotency_key=key,
                    request_hash=digest,
                    status_reason="awaiting an operator's approval",
                )
        except IntegrityError:
            existing = _same_key(provider, key, digest)
            if existing is None:
                raise
            return RequestedPayout(existing, created=False)
        ledger_post(
            kind=TransactionKind.PAYOUT,
            idempotency_key=f"payout:{payout.pk}:request",
            memo=f"Payout request ${micros_to_usd(amount)} ({method.lower()})",
            lines=[(payable, -amount), (clearing, amount)],
            metadata={"payout_id": str(payout.pk), "provider_id": str(provider.pk)},
        )
    return RequestedPayout(payout, created=True)


def _return_money(payout: Payout, *, reason: str, actor: User | None) -> None:
    """Move a failed or rejected payout's amount back to the provider's payable."""
    ledger_post(
        kind=TransactionKind.PAYOUT,
        idempotency_key=f"payout:{payout.pk}:returned",
        memo=f"Payout returned ${micros_to_usd(payout.amount)}: {reason}",
        lines=[
            (platform_account(AccountKind.PAYOUTS_CLEARING), -payout.amount),
            (provider_payable(payout.provider_id), payout.amount),
        ],
        created_by=actor,
        reason=reason,
        metadata={"payout_id": str(payout.pk)},
    )


def _pay(payout: Payout, *, reference: str, actor: User | None) -> None:
    ledger_post(
        kind=TransactionKind.PAYOUT,
        idempotency_key=f"payout:{payout.pk}:paid",
        memo=f"Payout paid ${micros_to_usd(payout.amount)} ({payout.method.lower()})",
        lines=[
            (platform_account(AccountKind.PAYOUTS_CLEARING), -payout.amount),
            (platform_account(AccountKind.PAYOUTS_SENT), payout.amount),
        ],
        created_by=actor,
        metadata={"payout_id": str(payout.pk), "reference": reference},
    )


def _operator(user: User) -> None:
    if not (user.is_active and user.is_staff):
        raise PayoutError(f"{user} is not an operator (staff).")


def payout_approve(*, payout: Payout, operator: User) -> Payout:
    """An operator approves a requested payout; sending follows after commit."""
    _operator(operator)
    with transaction.atomic():
        locked = lock_payout(payout.pk)
        locked.approved_by = operator
        locked.approved_at = timezone.now()
        payout_transition(
            locked,
            PayoutStatus.APPROVED,
            reason=f"approved by {operator.email}",
            actor=operator,
            extra_fields=("approved_by", "approved_at"),
        )
        transaction.on_commit(lambda: _dispatch_send(locked.pk))
    return locked


def _dispatch_send(payout_id: uuid.UUID) -> None:
    # By name: providers.tasks imports these services, so they do not import it back.
    try:
        current_app.signature("providers.send_payout").delay(str(payout_id))
    except Exception:  # the periodic sweep sends it anyway
        logger.exception("payout %s: could not queue the send; the sweep will", payout_id)


def payout_reject(*, payout: Payout, operator: User, reason: str) -> Payout:
    """An operator refuses a requested payout; its amount is available again."""
    _operator(operator)
    if not reason.strip():
        raise PayoutError("Give a reason; the provider sees it.", field="reason")
    with transaction.atomic():
        locked = lock_payout(payout.pk)
        payout_transition(
            locked, PayoutStatus.REJECTED, reason=f"rejected: {reason.strip()}", actor=operator
        )
        _return_money(locked, reason=reason.strip(), actor=operator)
    return locked


def payout_fail(*, payout: Payout, reason: str, operator: User | None = None) -> Payout:
    """The payout did not reach the provider (the gateway said so, or an operator); its amount
    is available again."""
    if operator is not None:
        _operator(operator)
    with transaction.atomic():
        locked = lock_payout(payout.pk)
        payout_transition(locked, PayoutStatus.FAILED, reason=f"failed: {reason}", actor=operator)
        _return_money(locked, reason=reason, actor=operator)
    return locked


def payout_mark_paid(
    *, payout: Payout, reference: str = "", operator: User | None = None
) -> Payout:
    """The money reached the provider. For crypto payouts an operator enters the transaction
    hash of the transfer they signed (`reference`, checked for the chain's format)."""
    if operator is not None:
        _operator(operator)
    with transaction.atomic():
        locked = lock_payout(payout.pk)
        if locked.method == PayoutMethod.CRYPTO:
            try:
                reference = check_tx_hash(locked.details["chain"], reference)
            except AddressError as exc:
                raise PayoutError(str(exc), field="tx_hash") from exc
        locked.tx_hash = reference[:128]  # the chain's hash, or PayPal's transaction id
        payout_transition(
            locked,
            PayoutStatus.PAID,
            reason=f"paid ({reference})" if reference else "paid",
            actor=operator,
            extra_fields=("tx_hash",),
        )
        _pay(locked, reference=reference, actor=operator)
    return locked


def retry_delay(attempts: int) -> timedelta:
    """How long a payout whose last send failed waits before the next: 1, 2, 4 … minutes,
    at most an hour."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def payout_send(
    *, payout_id: uuid.UUID | str, now: datetime | None = None, force: bool = False
) -> Payout:
    """Send an approved payout through its gateway. Safe to run twice: the first run moves it
    to PROCESSING under its lock; the gateway call happens outside any transaction; the result
    is recorded under the lock again. A retryable gateway error puts it back to APPROVED, to
    be sent again after `retry_delay` (or at once with `force`, an operator's "send now");
    any other error fails it (its money returns). A gateway that is not configured leaves it
    APPROVED and says why, without spending an attempt."""
    now = now or timezone.now()
    with transaction.atomic():
        payout = lock_payout(payout_id)
        stale = payout.status == PayoutStatus.PROCESSING and (
            payout.sent_at is None or payout.sent_at < now - STALE_PROCESSING
        )
        if payout.status != PayoutStatus.APPROVED and not stale:
            return payout
        backing_off = (
            payout.status == PayoutStatus.APPROVED
            and payout.attempts
            and payout.sent_at is not None
            and now < payout.sent_at + retry_delay(payout.attempts)
        )
        if backing_off and not force:
            return payout
        unready = gateway_for(payout.method).unconfigured()
        if unready:
            if payout.status_reason != unready:
                payout.status_reason = unready
                payout.save(update_fields=["status_reason"])
            return payout
        payout.attempts += 1
        payout.sent_at = now  # the start of this attempt, until it is sent
        if payout.status == PayoutStatus.APPROVED:
            payout_transition(
                payout,
                PayoutStatus.PROCESSING,
                reason=f"sending (attempt {payout.attempts})",
                extra_fields=("attempts", "sent_at"),
            )
        else:
            payout.save(update_fields=["attempts", "sent_at"])
    gateway = gateway_for(payout.method)
    try:
        sent = gateway.send(payout)
    except GatewayError as exc:
        logger.warning("payout %s: %s (retryable: %s)", payout.pk, exc, exc.retryable)
        if not exc.retryable:
            return payout_fail(payout=payout, reason=str(exc))
        with transaction.atomic():
            payout = lock_payout(payout.pk)
            if payout.status == PayoutStatus.PROCESSING:
                payout_transition(payout, PayoutStatus.APPROVED, reason=f"will retry: {exc}"[:500])
        return payout
    with transaction.atomic():
        payout = lock_payout(payout.pk)
        if payout.status != PayoutStatus.PROCESSING:
            return payout
        payout.gateway = gateway.name
        payout.gateway_ref = sent.reference
        payout.transfer = sent.transfer
        payout.sent_at = timezone.now()
        waiting = (
            "awaiting an operator's signed transfer"
            if payout.method == PayoutMethod.CRYPTO
            else f"sent to PayPal as batch {sent.reference}"
        )
        payout_transition(
            payout,
            PayoutStatus.SENT,
            reason=waiting,
            extra_fields=("gateway", "gateway_ref", "transfer", "sent_at"),
        )
    return payout


def payout_settle(*, payout_id: uuid.UUID | str) -> Payout:
    """Ask the gateway where a sent payout stands and record it: paid, failed (money back) or
    still pending."""
    payout = Payout.objects.get(pk=payout_id)
    if payout.status != PayoutStatus.SENT:
        return payout
    try:
        settlement = gateway_for(payout.method).settlement(payout)
    except GatewayError as exc:
        logger.warning("payout %s: settlement unknown: %s", payout.pk, exc)
        return payout
    if settlement.state == SettlementState.PAID:
        return _settled(
            payout, lambda p: payout_mark_paid(payout=p, reference=settlement.reference)
        )
    if settlement.state == SettlementState.FAILED:
        return _settled(payout, lambda p: payout_fail(payout=p, reason=settlement.reason))
    return payout


def _settled(payout: Payout, apply: Any) -> Payout:
    try:
        return apply(payout)
    except IllegalPayoutTransitionError:  # settled meanwhile by a twin run or an operator
        return Payout.objects.get(pk=payout.pk)


def payouts_send_due(*, now: datetime | None = None) -> int:
    """Send every approved payout whose retry delay has passed (and retry ones stuck
    mid-send); returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    stale_before = now - STALE_PROCESSING
    due = Payout.objects.filter(status=PayoutStatus.APPROVED) | Payout.objects.filter(
        status=PayoutStatus.PROCESSING, sent_at__lt=stale_before
    )
    for payout_id in due.order_by("created_at").values_list("pk", flat=True)[:500]:
        if payout_send(payout_id=payout_id, now=now).status == PayoutStatus.SENT:
            sent += 1
    return sent


def payouts_settle_due() -> int:
    """Settle sent PayPal payouts (crypto ones wait for the operator's hash)."""
    settled = 0
    due = Payout.objects.filter(status=PayoutStatus.SENT, method=PayoutMethod.PAYPAL)
    for payout_id in due.order_by("sent_at").values_list("pk", flat=True)[:500]:
        if payout_settle(payout_id=payout_id).status != PayoutStatus.SENT:
            settled += 1
    return settled
