"""Upstream clouds as capacity: the offer book, the instances we rent, what renting them
cost, and what we learned from launching them (DESIGN.md §4, §7)."""

import uuid

from django.db import models

from apps.core.models import StatusEvent


class InstanceStatus(models.TextChoices):
    PENDING = "PENDING"
    CREATING = "CREATING"
    STARTING = "STARTING"
    INSTALLING = "INSTALLING"
    WAITING_REGISTRATION = "WAITING_REGISTRATION"
    ACTIVE = "ACTIVE"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAILED = "FAILED"


FINAL_STATUSES = (InstanceStatus.TERMINATED, InstanceStatus.FAILED)
LIVE_STATUSES = tuple(s for s in InstanceStatus if s not in FINAL_STATUSES)
# Upstream has (or may have) a machine for these: it costs money until terminated.
BILLED_STATUSES = (
    InstanceStatus.CREATING,
    InstanceStatus.STARTING,
    InstanceStatus.INSTALLING,
    InstanceStatus.WAITING_REGISTRATION,
    InstanceStatus.ACTIVE,
    InstanceStatus.TERMINATING,
)


class ProvisionedInstance(models.Model):
    """A machine we rent from an upstream cloud to run our agent on. `label` is our
    correlation key upstream (Vast label, RunPod/Lambda name): an ambiguous create is found
    again by it. ACTIVE means the agent on it registered with the matching
    `provider_instance_id`. The agent registers with a per-instance token (hashed here)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    label = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=32, blank=True, db_index=True)
    provider_instance_id = models.CharField(max_length=128, blank=True, db_index=True)
    offer_id = models.CharField(max_length=255, blank=True)
    gpu_model = models.CharField(max_length=64)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=24, choices=InstanceStatus.choices, default=InstanceStatus.PENDING
    )
    status_reason = models.CharField(max_length=500, blank=True)
    upstream_status = models.CharField(max_length=64, blank=True)
    # Micro-dollars: what upstream charges us per hour for the whole instance, and what we
    # charge per GPU-hour for pods on it (upstream per GPU + markup).
    upstream_price_per_hour = models.BigIntegerField(null=True, blank=True)
    price_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    markup_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    max_price_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    pod = models.ForeignKey(
        "pods.Pod", null=True, blank=True, on_delete=models.SET_NULL, related_name="sourced"
    )
    node = models.ForeignKey(
        "nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="sourced"
    )
    token_prefix = models.CharField(max_length=16, blank=True)
    token_digest = models.CharField(max_length=64, unique=True, null=True, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    # "vm": our agent runs on it and pods run on its node; "container": it *is* the pod
    # (adapters' ExecutionModel, chosen by the provider that rented it).
    execution_model = models.CharField(max_length=16, default="vm")
    spot = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    create_sent_at = models.DateTimeField(null=True, blank=True)
    upstream_created_at = models.DateTimeField(null=True, blank=True)
    active_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    registration_deadline = models.DateTimeField(null=True, blank=True)
    idle_since = models.DateTimeField(null=True, blank=True)
    cost_accrued_until = models.DateTimeField(null=True, blank=True)
    last_seen_upstream_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["status", "provider"])]

    def __str__(self) -> str:
        return f"{self.label} {self.provider}:{self.provider_instance_id or '?'} ({self.status})"


class InstanceEvent(StatusEvent):
    """A status transition of a provisioned instance, with the reason."""

    instance = models.ForeignKey(
        ProvisionedInstance, on_delete=models.CASCADE, related_name="events"
    )
    from_status = models.CharField(max_length=24, choices=InstanceStatus.choices)
    to_status = models.CharField(max_length=24, choices=InstanceStatus.choices)


class OfferBookEntry(models.Model):
    """One upstream offer as last seen by the periodic refresh, priced with our markup. A
    pod request reads this book instead of waiting on three APIs; `fetched_at` says how old
    each line is and `stale` marks a provider that missed its deadline on the last refresh."""

    provider = models.CharField(max_length=32)
    offer_id = models.CharField(max_length=255)
    gpu_model = models.CharField(max_length=64)
    gpu_count = models.PositiveSmallIntegerField()
    vram_gb = models.PositiveIntegerField()
    upstream_price_per_hour = models.BigIntegerField()
    upstream_price_per_gpu_hour = models.BigIntegerField()
    price_per_gpu_hour = models.BigIntegerField()
    markup_percent = models.PositiveSmallIntegerField()
    region = models.CharField(max_length=64, blank=True)
    reliability = models.FloatField(default=0)
    spot = models.BooleanField(default=False)
    provider_gpu_name = models.CharField(max_length=128, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField()
    stale = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "offer_id", "spot"], name="offer_unique_per_provider_kind"
            )
        ]
        indexes = [
            models.Index(fields=["gpu_model", "gpu_count", "price_per_gpu_hour"]),
            models.Index(fields=["price_per_gpu_hour"]),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.offer_id} {self.gpu_count}× {self.gpu_model}"


class LaunchStat(models.Model):
    """Our own launch history per provider and GPU: it feeds HIGHEST_RELIABILITY."""

    provider = models.CharField(max_length=32)
    gpu_model = models.CharField(max_length=64)
    attempts = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    activations = models.PositiveIntegerField(default=0)
    seconds_to_active_total = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "gpu_model"], name="launch_stat_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.gpu_model}: {self.successes}/{self.attempts}"

    @property
    def mean_seconds_to_active(self) -> float | None:
        return self.seconds_to_active_total / self.activations if self.activations else None


class OrphanInstance(models.Model):
    """An instance a provider reports that we do not track. Terminated after a grace."""

    provider = models.CharField(max_length=32)
    provider_instance_id = models.CharField(max_length=128)
    label = models.CharField(max_length=255, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_instance_id"], name="orphan_unique_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"orphan {self.provider}:{self.provider_instance_id}"


class UpstreamCharge(models.Model):
    """What one instance cost upstream over one interval, booked in the ledger against the
    platform's revenue. Unique per (instance, period_start): a retried accrual cannot book
    twice. With UsageRecord (revenue) this makes margin per pod, provider and GPU a query."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        ProvisionedInstance, on_delete=models.PROTECT, related_name="charges"
    )
    pod = models.ForeignKey(
        "pods.Pod", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=32)
    gpu_model = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    seconds = models.PositiveIntegerField()
    price_per_hour = models.BigIntegerField()
    amount = models.BigIntegerField()
    transaction_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("-period_start",)
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "period_start"], name="upstream_charge_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.period_start:%H:%M:%S}+{self.seconds}s {self.amount}µ$"
