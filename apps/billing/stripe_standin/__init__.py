"""A local stand-in for Stripe Checkout, for the demo (`make run`) only: the real `stripe` SDK
in `apps.billing.services.topups` talks to it when `STRIPE_STANDIN=true` (never otherwise).

It speaks the part of Stripe's wire format our code uses:

- `POST /v1/checkout/sessions` (form-encoded, bracket notation, `Authorization: Bearer sk_test_…`,
  `Idempotency-Key` replays) → a Checkout Session object whose `url` is this server's own
  checkout page; `GET /v1/checkout/sessions/<id>` → the session as it stands.
- `GET /v1/charges` and `GET /v1/refunds` in Stripe's list shape (the daily reconciliation
  reads them): paying a session makes its charge.
- Errors in Stripe's shape `{"error": {"type", "message", "code"?, "param"?}}`.

Its checkout page (`GET /c/pay/<id>`) takes a test card: 4242 4242 4242 4242 pays, 4000 0000
0000 0002 is declined, like Stripe's test mode. Paying completes the session and delivers the
`checkout.session.completed` event to the configured webhook URL, signed as Stripe signs
(`Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">` with the webhook secret), so
the credit arrives through the same verified webhook path as in production. A delivery that
fails is retried in the background, as Stripe retries.

No Django here: `python -m apps.billing.stripe_standin` serves it standalone.
"""

from apps.billing.stripe_standin.server import RunningStandin, StripeStandin, sign_payload

__all__ = ["RunningStandin", "StripeStandin", "sign_payload"]
