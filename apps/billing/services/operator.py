"""Operators' corrections to a user's wallet: goodwill credits and refunds (DESIGN.md §3). Each
is one ledger transaction that records the operator and the reason."""

from apps.accounts.models import User
from apps.billing.models import AccountKind, Transaction, TransactionKind
from apps.billing.services.ledger import LedgerError, ledger_post, platform_account, wallet_for


class OperatorError(LedgerError):
    """The operation itself is not allowed (not an operator, no reason, bad amount)."""


def _check(*, amount: int, reason: str, operator: User) -> str:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise OperatorError("The amount must be a positive number of micro-dollars.")
    if not reason.strip():
        raise OperatorError("Give a reason; it is kept with the transaction.")
    if not (operator.is_active and operator.is_staff):
        raise OperatorError(f"{operator} is not an operator (staff).")
    return reason.strip()


def wallet_credit(
    *, user: User, amount: int, reason: str, operator: User, idempotency_key: str
) -> tuple[Transaction, bool]:
    """Give `amount` micro-dollars to the user's wallet at the platform's expense (goodwill:
    platform revenue → wallet). Idempotent on `idempotency_key`."""
    why = _check(amount=amount, reason=reason, operator=operator)
    return ledger_post(
        kind=TransactionKind.CREDIT,
        idempotency_key=idempotency_key,
        memo=f"Credit from {operator.email}",
        lines=[
            (platform_account(AccountKind.PLATFORM_REVENUE), -amount),
            (wallet_for(user), amount),
        ],
        created_by=operator,
        reason=why,
        metadata={"operator_id": str(operator.pk)},
    )


def wallet_refund(
    *, user: User, amount: int, reason: str, operator: User, idempotency_key: str
) -> tuple[Transaction, bool]:
    """Pay `amount` micro-dollars out of the user's wallet back through Stripe (wallet →
    Stripe clearing); the card refund itself is issued in Stripe. Refused with
    InsufficientFundsError if the wallet would end below its floor. Idempotent on
    `idempotency_key`."""
    why = _check(amount=amount, reason=reason, operator=operator)
    return ledger_post(
        kind=TransactionKind.REFUND,
        idempotency_key=idempotency_key,
        memo=f"Refund by {operator.email}",
        lines=[
            (wallet_for(user), -amount),
            (platform_account(AccountKind.STRIPE_CLEARING), amount),
        ],
        created_by=operator,
        reason=why,
        metadata={"operator_id": str(operator.pk)},
        floor=True,
    )
