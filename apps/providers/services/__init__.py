"""Every write of the providers app. Callers import from here."""

from apps.providers.services.keys import (
    PROVIDER_KEY_PREFIX,
    IssuedProviderKey,
    provider_key_create,
    provider_key_revoke,
)
from apps.providers.services.payouts import (
    IdempotencyConflictError,
    InsufficientAvailableError,
    PayoutError,
    payout_approve,
    payout_fail,
    payout_mark_paid,
    payout_reject,
    payout_request,
    payout_send,
    payout_settle,
    payouts_send_due,
    payouts_settle_due,
)
from apps.providers.services.providers import (
    AlreadyProviderError,
    PriceOutOfBandError,
    node_pricing_set,
    provider_register,
    provider_set_tier,
    provider_update,
)

__all__ = [
    "PROVIDER_KEY_PREFIX",
    "AlreadyProviderError",
    "IdempotencyConflictError",
    "InsufficientAvailableError",
    "IssuedProviderKey",
    "PayoutError",
    "PriceOutOfBandError",
    "node_pricing_set",
    "payout_approve",
    "payout_fail",
    "payout_mark_paid",
    "payout_reject",
    "payout_request",
    "payout_send",
    "payout_settle",
    "payouts_send_due",
    "payouts_settle_due",
    "provider_key_create",
    "provider_key_revoke",
    "provider_register",
    "provider_set_tier",
    "provider_update",
]
