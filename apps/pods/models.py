"""Pods: a user's container on GPUs, its state machine (lifecycle.py), the GPUs it holds and
what it was billed."""

import uuid

from django.conf import settings
from django.db import models

from apps.core.models import StatusEvent


class PodStatus(models.TextChoices):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    SCHEDULED = "SCHEDULED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    # The cloud took a spot pod back (or lost its host): billing ended at the interruption.
    INTERRUPTED = "INTERRUPTED"
    TERMINATED = "TERMINATED"


class PodCloud(models.TextChoices):
    """Where a pod may be placed: our own (platform and community) nodes, upstream clouds,
    or whichever the strategy prefers."""

    OWN = "own"
    UPSTREAM = "upstream"
    ANY = "any"


class PodStrategy(models.TextChoices):
    """How candidates are ranked (docs/pods.md "Choosing where a pod runs")."""

    LOWEST_PRICE = "LOWEST_PRICE"
    BEST_VALUE = "BEST_VALUE"
    HIGHEST_RELIABILITY = "HIGHEST_RELIABILITY"
    BALANCED = "BALANCED"


class PodRestart(models.TextChoices):
    NEVER = "never"
    ON_INTERRUPTION = "on-interruption"


ACTIVE_STATUSES = (
    PodStatus.PENDING,
    PodStatus.PROVISIONING,
    PodStatus.SCHEDULED,
    PodStatus.STARTING,
    PodStatus.RUNNING,
    PodStatus.STOPPING,
)
ON_NODE_STATUSES = (
    PodStatus.SCHEDULED,
    PodStatus.STARTING,
    PodStatus.RUNNING,
    PodStatus.STOPPING,
)


def hourly_rate(price_per_gpu_hour: int | None, gpu_count: int) -> int:
    """Micro-dollars per hour: per GPU, or the node's CPU rate for a pod without GPUs."""
    return (price_per_gpu_hour or 0) * max(gpu_count, 1)


class PodQuerySet(models.QuerySet):
    def for_user(self, user: object) -> "PodQuerySet":
        return self.filter(owner=user)


class Pod(models.Model):
    """A container a user asked for: what it runs, what GPUs it needs, and where it landed.
    `price_per_gpu_hour` is fixed when the pod is placed; `billed_until` is how far it has
    been charged."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pods"
    )
    name = models.CharField(max_length=100)
    image = models.CharField(max_length=255)
    command = models.JSONField(null=True, blank=True)
    env = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    gpu_model = models.CharField(max_length=64)
    gpu_count = models.PositiveSmallIntegerField()
    min_vram_mb = models.PositiveIntegerField(default=0)
    disk_gb = models.PositiveIntegerField(default=20)
    price_cap_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    restartable = models.BooleanField(default=False)
    # Placement choices (apps.pods.placement): where, ranked how, and spot.
    cloud = models.CharField(max_length=8, choices=PodCloud.choices, default=PodCloud.ANY)
    strategy = models.CharField(
        max_length=24, choices=PodStrategy.choices, default=PodStrategy.BALANCED
    )
    interruptible = models.BooleanField(default=False)
    # Spot: the most our price (markup included) may be per GPU-hour, micro-dollars.
    bid_cap_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    restart = models.CharField(max_length=16, choices=PodRestart.choices, default=PodRestart.NEVER)
    interruptions = models.PositiveSmallIntegerField(default=0)
    # A pod that *is* an upstream container (no node): the last time its provider reported it
    # running. Billing never runs past it, as it never runs past a node's last heartbeat.
    upstream_seen_at = models.DateTimeField(null=True, blank=True)
    # What the pod asked for beyond its GPUs' share of the node (null: the share).
    cpu_request_millicores = models.PositiveIntegerField(null=True, blank=True)
    memory_request_mb = models.PositiveIntegerField(null=True, blank=True)
    shm_request_mb = models.PositiveIntegerField(null=True, blank=True)
    volume = models.ForeignKey(
        "pods.Volume", on_delete=models.PROTECT, null=True, blank=True, related_name="pods"
    )
    volume_mount_path = models.CharField(max_length=255, blank=True)
    template = models.ForeignKey(
        "pods.PodTemplate", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    status = models.CharField(max_length=16, choices=PodStatus.choices, default=PodStatus.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    node = models.ForeignKey(
        "nodes.Node", on_delete=models.PROTECT, null=True, blank=True, related_name="pods"
    )
    gpu_indices = models.JSONField(default=list, blank=True)
    price_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    endpoints = models.JSONField(default=dict, blank=True)
    # Reserved on the node when placed (apps.pods.resources), enforced by the agent in Docker.
    cpu_millicores = models.PositiveIntegerField(default=0)
    memory_mb = models.PositiveIntegerField(default=0)
    shm_mb = models.PositiveIntegerField(default=0)
    oom_killed = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    billed_until = models.DateTimeField(null=True, blank=True)
    # Seconds charged since the pod started on its current node: each charge is the
    # cumulative price to date, rounded once, less what was charged before, so no run of
    # intervals drifts from price × time (apps.pods.metering).
    billed_seconds = models.PositiveBigIntegerField(default=0)
    # Hundredths of a micro-dollar of the provider's share not yet paid out by a charge: the
    # split carries its remainder forward the same way.
    share_carry = models.PositiveSmallIntegerField(default=0)
    # Billing never runs past this (the stop request, the node's last heartbeat).
    billing_ends_at = models.DateTimeField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=255, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    # The id of the request that asked for this pod (docs/observability.md): its placement, by
    # whichever process makes it, logs under it, and its start_pod command carries it to the
    # agent, so one id follows the pod's start from the API call to the container.
    request_id = models.CharField(max_length=128, blank=True, default="")

    objects = PodQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="pod_unique_idempotency_key_per_owner",
            )
        ]
        # No index names a column metering moves each tick (billed_until, billed_seconds,
        # share_carry), so its UPDATEs stay HOT (migration 0005); the scheduler's queue, PENDING
        # oldest first, and metering's RUNNING/STOPPING scan both use this one.
        indexes = [models.Index(fields=["status", "created_at"], name="pod_status_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def hourly_rate(self) -> int:
        """Micro-dollars per hour: per GPU, or the node's CPU rate for a pod without GPUs."""
        return hourly_rate(self.price_per_gpu_hour, self.gpu_count)


class VolumeStatus(models.TextChoices):
    CREATING = "CREATING"
    READY = "READY"
    FAILED = "FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"


LIVE_VOLUME_STATUSES = (VolumeStatus.CREATING, VolumeStatus.READY, VolumeStatus.DELETING)


class VolumeQuerySet(models.QuerySet):
    def for_user(self, user: object) -> "VolumeQuerySet":
        return self.filter(owner=user)


class Volume(models.Model):
    """Persistent storage on one node (a Docker volume its agent creates and measures) that
    outlives the pods mounting it. Billed per GB-month, by the minute, while it exists
    (apps.pods.storage_billing); deleted only by its own DELETE."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="volumes"
    )
    name = models.CharField(max_length=100)
    size_gb = models.PositiveIntegerField()
    node = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="volumes")
    status = models.CharField(
        max_length=16, choices=VolumeStatus.choices, default=VolumeStatus.CREATING
    )
    status_reason = models.CharField(max_length=500, blank=True)
    used_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    # Fixed at creation: micro-dollars per GB per 30-day month.
    price_per_gb_month = models.BigIntegerField()
    # Billing: whole minutes since created_at already charged, and their cumulative amount.
    billed_minutes = models.PositiveIntegerField(default=0)
    billed_amount = models.BigIntegerField(default=0)
    # Set once a deleted (or failed) volume is billed to its end: later ticks skip it.
    billing_closed = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = VolumeQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.size_gb} GB, {self.status})"

    @property
    def docker_name(self) -> str:
        return f"gco-vol-{self.pk}"


class PodTemplate(models.Model):
    """What a pod runs, saved to start pods from: a user's own (owner set) or one the operators
    publish (owner null, is_public). A pod request's own values override the template's."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="pod_templates",
    )
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    image = models.CharField(max_length=255)
    command = models.JSONField(null=True, blank=True)
    env = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    volume_mount_path = models.CharField(max_length=255, default="/workspace")
    recommended_gpu_model = models.CharField(max_length=64, blank=True)
    is_public = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=["slug"], condition=models.Q(owner__isnull=True), name="template_public_slug"
            ),
            models.UniqueConstraint(
                fields=["owner", "slug"], name="template_unique_slug_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PodEvent(StatusEvent):
    """A status transition of a pod, shown to its owner."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=PodStatus.choices)
    to_status = models.CharField(max_length=16, choices=PodStatus.choices)


class GpuAllocation(models.Model):
    """A GPU held by a pod. One row per GPU at most (the primary key is the GPU), so the
    database itself refuses to give one GPU to two pods."""

    gpu = models.OneToOneField(
        "nodes.Gpu", on_delete=models.CASCADE, primary_key=True, related_name="allocation"
    )
    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="allocations")
    allocated_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} → pod {self.pod_id}"


class UsageRecord(models.Model):
    """One billed interval of one pod. Unique per (pod, period_start): a retried or duplicated
    billing tick cannot charge the same interval twice."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by the unique (pod, period_start) constraint, which leads with the pod.
    pod = models.ForeignKey(Pod, on_delete=models.PROTECT, related_name="usage", db_index=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # None: the pod ran on an upstream container cloud (the rented instance is the pod).
    node = models.ForeignKey(
        "nodes.Node", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    seconds = models.PositiveIntegerField()
    gpu_count = models.PositiveSmallIntegerField()
    price_per_gpu_hour = models.BigIntegerField()
    amount = models.BigIntegerField()
    provider_share = models.BigIntegerField(default=0)
    transaction_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("-period_start",)
        constraints = [
            models.UniqueConstraint(fields=["pod", "period_start"], name="usage_unique_interval")
        ]

    def __str__(self) -> str:
        return f"{self.pod_id} {self.period_start:%H:%M:%S}+{self.seconds}s {self.amount}µ$"
