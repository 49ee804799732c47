"""Writes of the webhooks app: registering endpoints, recording events, and delivering them.

Delivery: an event is recorded once (its `dedupe_key` is unique) with one `WebhookDelivery`
per subscribed endpoint, and each delivery is handed to the `webhooks.deliver` task after the
transaction commits. An attempt POSTs the signed body; a 2xx answer ends it, anything else
(another status, a timeout, a refused connection) schedules the next attempt after
WEBHOOK_RETRY_BASE_S × 2^(attempt−1) seconds (capped at WEBHOOK_RETRY_MAX_S), up to
WEBHOOK_MAX_ATTEMPTS. Every attempt is logged with its status code or error. A delivery whose
task was lost is picked up by the `webhooks.retry_due` sweep."""

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.webhooks.addresses import UnsafeUrlError, check_url
from apps.webhooks.locks import lock_pending_delivery
from apps.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    all_event_types,
)
from apps.webhooks.signing import SIGNATURE_HEADER, endpoint_secret, new_salt, sign

logger = logging.getLogger(__name__)

MAX_ENDPOINTS_PER_USER = 20


class EndpointInputError(ValueError):
    """Bad input for an endpoint: `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def endpoint_create(
    *, user: Any, url: str, description: str = "", event_types: list[str] | None = None
) -> CreatedEndpoint:
    """Register `url` for `event_types` (default all). Raises EndpointInputError."""
    known = all_event_types()
    chosen = known if event_types is None else [t for t in known if t in set(event_types)]
    unknown = sorted(set(event_types or ()) - set(known))
    if unknown:
        raise EndpointInputError("event_types", f"Unknown event type(s): {', '.join(unknown)}.")
    if not chosen:
        raise EndpointInputError("event_types", "Choose at least one event type.")
    try:
        check_url(url)
    except UnsafeUrlError as exc:
        raise EndpointInputError("url", str(exc)) from exc
    if WebhookEndpoint.objects.for_user(user).active().count() >= MAX_ENDPOINTS_PER_USER:
        raise EndpointInputError(
            "url", f"At most {MAX_ENDPOINTS_PER_USER} endpoints; delete one first."
        )
    endpoint = WebhookEndpoint(
        user=user, url=url, description=description, event_types=chosen, secret_salt=new_salt()
    )
    secret = endpoint_secret(endpoint_id=endpoint.id, salt=endpoint.secret_salt)
    endpoint.secret_prefix = secret[:14]
    endpoint.save()
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def endpoint_disable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending to it (its log stays); pending deliveries are dropped at their next try."""
    if endpoint.disabled_at is None:
        endpoint.disabled_at = timezone.now()
        endpoint.save(update_fields=["disabled_at"])
    return endpoint


def event_emit(*, user_id: Any, type: str, data: dict[str, Any], dedupe_key: str) -> bool:
    """Record an event for `user_id` and queue it for each of their endpoints subscribed to
    `type`. False (and nothing queued) when an event with `dedupe_key` exists already."""
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(user_id=user_id).active() if type in e.event_types
    ]
    if not endpoints:
        return False  # nobody listens: no event row either
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                user_id=user_id, type=type, data=data, dedupe_key=dedupe_key[:200]
            )
            now = timezone.now()
            deliveries = WebhookDelivery.objects.bulk_create(
                [WebhookDelivery(endpoint=e, event=event, next_attempt_at=now) for e in endpoints]
            )
    except IntegrityError:
        return False
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _dispatch(ids))
    return True


def _dispatch(delivery_ids: list[uuid.UUID], countdown: float = 0) -> None:
    # By name: tasks.py imports this module (docs/architecture.md).
    deliver = current_app.signature("webhooks.deliver")
    for delivery_id in delivery_ids:
        try:
            deliver.apply_async((str(delivery_id),), countdown=countdown)
        except Exception:  # the retry_due sweep sends it anyway
            logger.exception("webhook delivery %s: could not queue; the sweep will", delivery_id)


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    base = float(settings.WEBHOOK_RETRY_BASE_S)
    return min(base * 2 ** (attempt - 1), float(settings.WEBHOOK_RETRY_MAX_S))


def event_body(event: WebhookEvent) -> bytes:
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "created": int(event.created_at.timestamp()),
            "data": event.data,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def _claim(delivery_id: Any, now: datetime) -> WebhookDelivery | None:
    """Take the delivery's next attempt: only one worker gets it, even when a task and the
    sweep run at once (the row lock, then `next_attempt_at` pushed past the attempt)."""
    with transaction.atomic():
        delivery = lock_pending_delivery(delivery_id)
        if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now):
            return None
        if not delivery.endpoint.is_active:
            delivery.status = DeliveryStatus.FAILED
            delivery.save(update_fields=["status"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_S + 60)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def delivery_attempt(*, delivery_id: Any) -> float | None:
    """Make the delivery's due attempt. Returns the seconds until the next attempt, or None
    when there is none to schedule (delivered, given up, not due, or taken by another)."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    endpoint, event = delivery.endpoint, delivery.event
    body = event_body(event)
    secret = endpoint_secret(endpoint_id=endpoint.id, salt=endpoint.secret_salt)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GCO-Webhooks/1",
        "X-GCO-Event": event.type,
        "X-GCO-Delivery": str(delivery.id),
        SIGNATURE_HEADER: sign(secret=secret, body=body),
    }
    status_code: int | None = None
    error = ""
    started = time.monotonic()
    try:
        check_url(endpoint.url)
        with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
            response = client.post(endpoint.url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except UnsafeUrlError as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = int((time.monotonic() - started) * 1000)
    ok = not error
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempt=delivery.attempts,
            status_code=status_code,
            error=error[:500],
            duration_ms=duration_ms,
        )
        if ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.next_attempt_at = None
            delay = None
        elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delay = None
        else:
            delay = retry_delay(delivery.attempts)
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        delivery.save(update_fields=["status", "next_attempt_at"])
    if not ok:
        logger.info(
            "webhook delivery %s attempt %s to %s failed: %s",
            delivery.pk,
            delivery.attempts,
            endpoint.url,
            error,
        )
    return delay


def deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[uuid.UUID]:
    """Pending deliveries whose next attempt is due (their task lost, or never queued)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
