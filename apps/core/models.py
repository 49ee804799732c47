"""Rows the shared request machinery keeps: stored responses for Idempotency-Key replays."""

from django.conf import settings
from django.db import models


class IdempotencyRecord(models.Model):
    """The first response to one (user, operation, Idempotency-Key): a retry with the same key
    and body gets this status and body back; another body under the key is refused (422).
    `status_code` is null while the first request is still running. Records expire after
    IDEMPOTENCY_KEY_TTL_S (24 h): the key may then be used afresh (docs/idempotency.md)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=100, help_text="The operation, e.g. pods.create.")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "scope", "key"], name="core_one_record_per_idempotency_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} → {self.status_code or 'running'}"


class StatusEvent(models.Model):
    """Abstract: one status transition of a row, recorded by its app's state machine (nodes,
    pods, payouts, provisioned instances, deployments). A concrete event adds the foreign key
    to its row and `from_status`/`to_status` with its own status choices."""

    at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=500)

    class Meta:
        abstract = True
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}: {self.reason}"  # type: ignore[attr-defined]
