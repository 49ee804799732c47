"""Stripe Checkout top-ups (DESIGN.md §3): a deposit creates a Checkout Session; only the
verified `checkout.session.completed` webhook credits the wallet, once per event and once per
session."""

import logging
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from apps.accounts.models import User
from apps.billing.models import AccountKind, Transaction, TransactionKind
from apps.billing.services.ledger import ledger_post, platform_account, wallet_for
from apps.core.money import micros_to_usd

logger = logging.getLogger(__name__)

MICROS_PER_CENT = 10_000
# Events that can mean "this Checkout Session is now paid": card payments complete paid;
# delayed methods (bank debits) complete unpaid and succeed later.
PAID_SESSION_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)


class StripeNotConfiguredError(Exception):
    """A Stripe setting the operation needs is empty; the message names it."""


class StripeEventError(ValueError):
    """A verified event whose content we cannot use (missing or mistyped fields)."""


@dataclass(frozen=True)
class CheckoutSession:
    session_id: str
    checkout_url: str


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=retries,
    )


def stripe_client() -> stripe.StripeClient:
    """The SDK client for STRIPE_API_BASE (the real API, or the fake in tests)."""
    if not settings.STRIPE_SECRET_KEY:
        raise StripeNotConfiguredError(
            "Top-ups are not available: STRIPE_SECRET_KEY is not set on this server."
        )
    return _client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE.rstrip("/"),
        float(settings.STRIPE_TIMEOUT_S),
        int(settings.STRIPE_MAX_NETWORK_RETRIES),
    )


def checkout_session_create(
    *, user: User, amount_micros: int, idempotency_key: str | None = None
) -> CheckoutSession:
    """Ask Stripe for a hosted Checkout page charging `amount_micros` (whole cents) to `user`.
    Nothing is credited here. `idempotency_key` (the client's, already scoped to the user)
    makes a retried request return the same session. Raises stripe.StripeError on failure."""
    if amount_micros <= 0 or amount_micros % MICROS_PER_CENT:
        raise ValueError("A deposit is a positive number of whole cents.")
    cents = amount_micros // MICROS_PER_CENT
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": cents,
                    "product_data": {"name": f"GPU Cloud credit (${micros_to_usd(amount_micros)})"},
                },
            }
        ],
        "client_reference_id": str(user.pk),
        "customer_email": user.email,
        "metadata": {"user_id": str(user.pk), "amount_micros": str(amount_micros)},
        "success_url": settings.STRIPE_CHECKOUT_SUCCESS_URL,
        "cancel_url": settings.STRIPE_CHECKOUT_CANCEL_URL,
    }
    options: dict[str, Any] = {}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    session = stripe_client().v1.checkout.sessions.create(params=params, options=options)  # type: ignore[arg-type]
    if not session.url:
        raise stripe.APIError("Stripe returned a Checkout Session without a URL.")
    return CheckoutSession(session_id=session.id, checkout_url=session.url)


def _session_fields(event: dict[str, Any]) -> dict[str, Any]:
    session = event.get("data", {}).get("object")
    if not isinstance(session, dict) or session.get("object") != "checkout.session":
        raise StripeEventError("data.object is not a checkout.session.")
    session_id = session.get("id")
    if not isinstance(session_id, str) or not session_id:
        raise StripeEventError("The checkout session has no id.")
    return session


def topup_from_checkout_event(*, event: dict[str, Any]) -> Transaction | None:
    """Credit a paid Checkout Session to its user's wallet: Stripe clearing → wallet,
    `amount_total` cents as micro-dollars. Idempotent twice over: the transaction's key is the
    event id (a redelivery) and its external ref the session id (a second event for the same
    session). Returns the transaction when this call posted it, None when there was nothing
    (more) to credit: unpaid, not one of our sessions, or already credited."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise StripeEventError("The event has no id.")
    session = _session_fields(event)
    if session.get("payment_status") != "paid":
        logger.info("stripe: session %s not paid yet (%s)", session["id"], event_id)
        return None
    amount_total = session.get("amount_total")
    if isinstance(amount_total, bool) or not isinstance(amount_total, int) or amount_total <= 0:
        raise StripeEventError("amount_total is not a positive number of cents.")
    currency = session.get("currency")
    if currency != "usd":
        raise StripeEventError(f"currency is {currency!r}; only usd is credited.")
    user = _session_user(session)
    if user is None:
        return None
    amount = amount_total * MICROS_PER_CENT
    expected = (session.get("metadata") or {}).get("amount_micros")
    if expected is not None and str(expected) != str(amount):
        logger.warning(
            "stripe: session %s paid %s micro-dollars, created for %s; crediting what was paid",
            session["id"],
            amount,
            expected,
        )
    posted, created = ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=f"stripe:event:{event_id}",
        external_ref=f"stripe:checkout_session:{session['id']}",
        memo=f"Top-up ${micros_to_usd(amount)} (Stripe)",
        lines=[
            (platform_account(AccountKind.STRIPE_CLEARING), -amount),
            (wallet_for(user), amount),
        ],
        metadata={
            "stripe_event_id": event_id,
            "stripe_session_id": session["id"],
            "stripe_payment_intent": session.get("payment_intent"),
        },
    )
    if not created:
        logger.info(
            "stripe: %s for session %s already credited (transaction %s)",
            event_id,
            session["id"],
            posted.pk,
        )
        return None
    return posted


def _session_user(session: dict[str, Any]) -> User | None:
    """The user a session was created for. A session without our reference was created by
    something else on the Stripe account: not ours to credit."""
    user_id = session.get("client_reference_id") or (session.get("metadata") or {}).get("user_id")
    if not user_id:
        logger.warning("stripe: session %s has no client_reference_id; ignored", session["id"])
        return None
    try:
        user = User.objects.filter(pk=uuid.UUID(str(user_id))).first()
    except ValueError:
        user = None
    if user is None:
        # Money was taken and cannot be credited automatically: an operator must act.
        logger.error(
            "stripe: session %s was paid for unknown user %r; credit it by hand",
            session["id"],
            user_id,
        )
    return user
