"""Ways into a running pod: terminal sessions (browser ↔ server ↔ agent ↔ `docker exec`) and
the access tokens of the HTTP port proxy."""

import uuid

from django.conf import settings
from django.db import models


class TerminalStatus(models.TextChoices):
    OPENING = "OPENING"  # asked of the agent; waiting for it to dial in
    OPEN = "OPEN"  # the agent is connected: bytes flow
    CLOSED = "CLOSED"


class TerminalSession(models.Model):
    """One browser terminal on a pod. The agent proves it was asked with a one-time token
    (`token_digest`, SHA-256 of the `tt_…` token sent in the OPEN_TERMINAL command) and its own
    node token; `browser_channel` is where the agent's side relays output (a Channels channel
    name, so the two sockets may live in different web processes)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pod = models.ForeignKey("pods.Pod", on_delete=models.CASCADE, related_name="terminals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="+")
    command_id = models.UUIDField(null=True, blank=True)
    token_digest = models.CharField(max_length=64, unique=True)
    browser_channel = models.CharField(max_length=200)
    status = models.CharField(
        max_length=8, choices=TerminalStatus.choices, default=TerminalStatus.OPENING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"terminal {self.pk} on pod {self.pod_id} ({self.status})"


class PodAccessTokenQuerySet(models.QuerySet):
    def active(self) -> "PodAccessTokenQuerySet":
        return self.filter(revoked_at__isnull=True)


class PodAccessToken(models.Model):
    """A bearer credential for one pod's port proxy (`pt_…`), for clients without the owner's
    browser session (scripts, another machine). Shown once, stored as its SHA-256; revoking it
    keeps the row for the record."""

    id = models.BigAutoField(primary_key=True)
    pod = models.ForeignKey("pods.Pod", on_delete=models.CASCADE, related_name="access_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = PodAccessTokenQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… for pod {self.pod_id}"
