"""`POST /webhooks/stripe`: Stripe's event deliveries. Not a DRF view: the signature is over the
raw bytes, there is no session or API key to check (the signature is the authentication), and
no CSRF token (Stripe is not a browser)."""

import logging

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.services import StripeEventError, topup_from_checkout_event
from apps.billing.services.topups import PAID_SESSION_EVENTS
from apps.core.errors import json_error
from apps.core.parsers import json_loads

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return json_error(
            status_code=503,
            code="not_configured",
            message="Stripe webhooks are not accepted: STRIPE_WEBHOOK_SECRET is not set.",
        )
    payload = request.body
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("Stripe-Signature"),
            secret,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_S,
        )
    except stripe.SignatureVerificationError as exc:
        logger.warning("stripe webhook: signature rejected: %s", exc.user_message)
        return json_error(
            status_code=400,
            code="bad_signature",
            message=f"Stripe-Signature rejected: {exc.user_message}",
        )
    except UnicodeDecodeError:
        return json_error(status_code=400, code="malformed", message="The body is not UTF-8.")
    try:
        event = json_loads(payload)
    except ValueError:
        return json_error(status_code=400, code="malformed", message="The body is not JSON.")
    if not isinstance(event, dict) or event.get("object") != "event":
        return json_error(
            status_code=400, code="malformed", message="The body is not a Stripe event object."
        )
    if event.get("type") not in PAID_SESSION_EVENTS:
        return JsonResponse({"received": True, "handled": False})
    try:
        posted = topup_from_checkout_event(event=event)
    except StripeEventError as exc:
        logger.error("stripe webhook: unusable event %s: %s", event.get("id"), exc)
        return json_error(status_code=400, code="malformed", message=f"Unusable event: {exc}")
    return JsonResponse({"received": True, "handled": True, "credited": posted is not None})
