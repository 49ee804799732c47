"""Every write of the billing app. Callers import from here:

from apps.billing.services import ledger_post, ledger_post_many, Posting, wallet_for
"""

from apps.billing.services.ledger import (
    InsufficientFundsError,
    LedgerError,
    LedgerMismatch,
    Posted,
    Posting,
    UnbalancedPostingError,
    ledger_check,
    ledger_post,
    ledger_post_many,
    payable_ids_for,
    platform_account,
    provider_payable,
    wallet_floor,
    wallet_for,
    wallet_ids_for,
)
from apps.billing.services.limits import spend_limits_set
from apps.billing.services.operator import OperatorError, wallet_credit, wallet_refund
from apps.billing.services.reconciliation import stripe_reconcile
from apps.billing.services.topups import (
    CheckoutSession,
    StripeEventError,
    StripeNotConfiguredError,
    checkout_session_create,
    topup_from_checkout_event,
)

__all__ = [
    "CheckoutSession",
    "InsufficientFundsError",
    "LedgerError",
    "LedgerMismatch",
    "OperatorError",
    "Posted",
    "Posting",
    "StripeEventError",
    "StripeNotConfiguredError",
    "UnbalancedPostingError",
    "checkout_session_create",
    "ledger_check",
    "ledger_post",
    "ledger_post_many",
    "payable_ids_for",
    "platform_account",
    "provider_payable",
    "spend_limits_set",
    "stripe_reconcile",
    "topup_from_checkout_event",
    "wallet_credit",
    "wallet_floor",
    "wallet_for",
    "wallet_ids_for",
    "wallet_refund",
]
