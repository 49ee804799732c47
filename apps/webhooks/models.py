"""Outgoing webhooks: the URLs users register, the events we send them, and each delivery's
log of attempts; and the record of notification emails already sent (so none goes twice)."""

import uuid

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    POD_STATUS = "pod.status_changed", "Pod status changed"
    DEPLOYMENT_STATUS = "deployment.status_changed", "Deployment status changed"
    BALANCE_LOW = "balance.low", "Balance low"
    PAYOUT_STATUS = "payout.status_changed", "Payout status changed"
    NODE_OFFLINE = "node.offline", "Node went offline"


def all_event_types() -> list[str]:
    return [t.value for t in EventType]


class WebhookEndpointQuerySet(models.QuerySet):
    def for_user(self, user: object) -> "WebhookEndpointQuerySet":
        return self.filter(user=user)

    def active(self) -> "WebhookEndpointQuerySet":
        return self.filter(disabled_at__isnull=True)


class WebhookEndpoint(models.Model):
    """A URL of a user's that gets their events, signed with a per-endpoint secret. The secret
    is not stored: it is derived from the server's signing key and `secret_salt`
    (apps.webhooks.signing), shown once at creation, and changed by rolling the salt."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=all_event_types)
    secret_salt = models.CharField(max_length=64)
    secret_prefix = models.CharField(max_length=20)  # shown in lists to tell secrets apart
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.url

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class WebhookEvent(models.Model):
    """Something that happened to a user's resources, once: `dedupe_key` is unique, so a signal
    received twice (a retried task, a replayed heartbeat) makes one event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_events"
    )
    type = models.CharField(max_length=40, choices=EventType.choices)
    data = models.JSONField()
    dedupe_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING"  # waiting for its first or next attempt
    SUCCEEDED = "SUCCEEDED"  # a 2xx answer
    FAILED = "FAILED"  # every attempt failed


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_once_per_endpoint")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event.type} → {self.endpoint.url} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: when, which try, what came back (status code or error)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("attempt",)
        constraints = [models.UniqueConstraint(fields=["delivery", "attempt"], name="attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.status_code or self.error}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class SentNotification(models.Model):
    """An email already sent for one event (`key`, unique): sending again is a no-op."""

    key = models.CharField(max_length=200, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=200)
    sent_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.key} → {self.user_id}"
