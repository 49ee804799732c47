"""Reads of the webhooks app shared by the API and the portal page."""

from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def endpoints_of(user: Any) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.for_user(user)


def deliveries_of(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, each with its event and attempt log (three
    queries however many there are)."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("log", queryset=WebhookAttempt.objects.order_by("attempt")))
        .order_by("-created_at")
    )
