"""Row locks of the webhooks app."""

from typing import Any

from apps.webhooks.models import DeliveryStatus, WebhookDelivery


def lock_pending_delivery(delivery_id: Any) -> WebhookDelivery | None:
    # One attempt at a time per delivery: a queued task and the retry sweep may both reach the
    # same delivery; the one that finds it locked moves on (SKIP LOCKED) instead of waiting to
    # send it a second time.
    return (
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .select_related("endpoint", "event")
        .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .first()
    )
