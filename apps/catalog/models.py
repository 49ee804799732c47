"""Model catalog (DESIGN.md §8): what can be deployed (`ModelTemplate`), a user's deployment of
it (`Deployment`) with its replicas (`Replica`, one pod each), the deployment's API keys
(`DeploymentKey`, `sk_…`) and the per-request usage log the proxy flushes in batches
(`ModelUsageLog`).

Deployment lifecycle (DESIGN.md §4): PENDING → PROVISIONING → LOADING → READY ⇄ DEGRADED →
STOPPED / FAILED. Only READY replicas get proxied traffic; a deployment is READY when all its
wanted replicas are, DEGRADED when some (but not all) are."""

import uuid

from django.conf import settings
from django.db import models

from apps.core.models import StatusEvent


class ModelCategory(models.TextChoices):
    LLM = "llm"
    IMAGE = "image"
    AUDIO_STT = "audio-stt"
    AUDIO_TTS = "audio-tts"
    EMBEDDING = "embedding"
    CODE = "code"
    MULTIMODAL = "multimodal"


class Capability(models.TextChoices):
    """What a deployment answers on the proxy; each maps to `/v1` endpoints."""

    CHAT = "chat"  # /v1/chat/completions
    COMPLETIONS = "completions"  # /v1/completions
    EMBEDDINGS = "embeddings"  # /v1/embeddings
    TRANSCRIPTION = "transcription"  # /v1/audio/transcriptions
    SPEECH = "speech"  # /v1/audio/speech
    IMAGES = "images"  # /v1/images/generations


class ModelTemplate(models.Model):
    """A deployable model: the public image that serves it, how to start it, and what GPU it
    needs. `args` may contain `{port}` and `{model_name}`, filled in per replica. Templates with
    `gpu_count=0` run on CPU nodes (the local backends for laptops and tests)."""

    slug = models.CharField(max_length=80, unique=True)  # letters, digits, . _ -
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=16, choices=ModelCategory.choices)
    capabilities = models.JSONField(default=list)  # [Capability]
    served_model = models.CharField(max_length=200)  # the upstream model id (HF repo, file)
    image = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)  # container command
    env = models.JSONField(default=dict, blank=True)
    port = models.PositiveIntegerField()
    health_path = models.CharField(max_length=200, default="/health")
    min_vram_gb = models.PositiveIntegerField(default=0)
    recommended_vram_gb = models.PositiveIntegerField(default=0)
    recommended_gpu = models.CharField(max_length=64)  # canonical name, or "CPU"
    gpu_count = models.PositiveSmallIntegerField(default=1)
    # Host networking: the replica's port is allocated per replica and passed in `args`.
    host_network = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("category", "slug")

    def __str__(self) -> str:
        return self.slug


class DeploymentStatus(models.TextChoices):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    LOADING = "LOADING"
    READY = "READY"
    DEGRADED = "DEGRADED"
    IDLE = "IDLE"  # scaled to zero: no replica; the next request starts one and waits
    STOPPED = "STOPPED"
    FAILED = "FAILED"


DEPLOYMENT_FINAL = (DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


class DeploymentQuerySet(models.QuerySet):
    def for_user(self, user: object) -> "DeploymentQuerySet":
        return self.filter(owner=user)

    def live(self) -> "DeploymentQuerySet":
        return self.exclude(status__in=DEPLOYMENT_FINAL)


class Deployment(models.Model):
    """A user's running copy of a template behind the proxy. Clients address it as
    `model_name`; the container spec is copied from the template at deploy time (with the
    user's overrides), so editing a template never changes a running deployment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deployments"
    )
    template = models.ForeignKey(ModelTemplate, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    model_name = models.CharField(max_length=200)  # the `model` clients send
    capabilities = models.JSONField(default=list)

    image = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    port = models.PositiveIntegerField()
    health_path = models.CharField(max_length=200)
    host_network = models.BooleanField(default=False)
    gpu_model = models.CharField(max_length=64)
    gpu_count = models.PositiveSmallIntegerField()
    min_vram_mb = models.PositiveIntegerField(default=0)
    price_cap_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    replicas = models.PositiveSmallIntegerField(default=1)  # wanted now (the autoscaler moves it)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)

    # Scaling (issue 14): the autoscaler keeps `replicas` within [min_replicas, max_replicas],
    # aiming at `target_concurrency` outstanding requests per READY replica. A replica goes
    # after `scale_down_delay_s` of the deployment needing fewer. While no replica is READY,
    # up to `max_queue` requests wait up to `queue_timeout_s` for one (then 503).
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=1)
    target_concurrency = models.PositiveIntegerField(default=8)
    scale_down_delay_s = models.PositiveIntegerField(default=300)
    max_queue = models.PositiveIntegerField(default=100)
    queue_timeout_s = models.PositiveIntegerField(default=60)
    # Since when the load has wanted fewer replicas than `replicas` (None: it has not).
    scale_down_since = models.DateTimeField(null=True, blank=True)

    status = models.CharField(
        max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING
    )
    status_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class DeploymentEvent(StatusEvent):
    """A status transition of a deployment, shown to its owner."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=DeploymentStatus.choices)
    to_status = models.CharField(max_length=16, choices=DeploymentStatus.choices)


class ReplicaStatus(models.TextChoices):
    PENDING = "PENDING"  # its pod waits for capacity
    LOADING = "LOADING"  # the container runs; the health path does not answer yet
    READY = "READY"  # answers its health path: gets traffic
    UNHEALTHY = "UNHEALTHY"  # answered before, fails its health checks now
    DRAINING = "DRAINING"  # chosen for removal: no new requests; stopped once none is in flight
    STOPPED = "STOPPED"
    FAILED = "FAILED"


REPLICA_LIVE = (
    ReplicaStatus.PENDING,
    ReplicaStatus.LOADING,
    ReplicaStatus.READY,
    ReplicaStatus.UNHEALTHY,
    ReplicaStatus.DRAINING,
)
# Live replicas that count towards the deployment's wanted number (a draining one is leaving).
REPLICA_SERVING = (
    ReplicaStatus.PENDING,
    ReplicaStatus.LOADING,
    ReplicaStatus.READY,
    ReplicaStatus.UNHEALTHY,
)


class Replica(models.Model):
    """One serving copy of a deployment: a pod (which carries the placement and the billing)
    and where it answers. `base_url` is filled from the pod's endpoints once its node reports
    the container started."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="replica_set")
    pod = models.OneToOneField(
        "pods.Pod", on_delete=models.PROTECT, null=True, blank=True, related_name="replica"
    )
    port = models.PositiveIntegerField()  # the container port it serves on
    # Host-network replicas (the local backends) bind a host port of their own: unique while
    # the replica lives, cleared when it ends, so two replicas on one host never collide.
    host_port = models.PositiveIntegerField(null=True, blank=True, unique=True)
    status = models.CharField(
        max_length=16, choices=ReplicaStatus.choices, default=ReplicaStatus.PENDING
    )
    status_reason = models.CharField(max_length=500, blank=True)
    base_url = models.CharField(max_length=255, blank=True)  # http://host:port
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_health_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    draining_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"replica {self.pk} of {self.deployment_id} ({self.status})"


class DeploymentKey(models.Model):
    """An API key of one deployment (`sk_…`): only its SHA-256 digest is stored, the raw key is
    shown once. Rotating issues a new key and revokes the old ones; revoked rows are kept.
    A deployment may have several keys, each with an optional monthly token budget (prompt +
    completion tokens per calendar month, UTC) and its own per-minute rate limit, both checked
    besides the deployment's own limit."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=20)
    digest = models.CharField(max_length=64, unique=True)
    monthly_token_budget = models.BigIntegerField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({'revoked' if self.revoked_at else 'active'})"


class ModelUsageLog(models.Model):
    """One proxied request: tokens from the backend's `usage`, latency, status. Written in
    batches by the proxy's usage buffer, never one row per request on the request path."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="usage")
    replica_id = models.BigIntegerField(null=True, blank=True)
    at = models.DateTimeField()
    endpoint = models.CharField(max_length=40)
    status_code = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    first_byte_ms = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    streamed = models.BooleanField(default=False)
    error = models.CharField(max_length=64, blank=True)
    # Voice sessions (issue 8) log seconds of audio in and out here too.
    audio_in_s = models.FloatField(default=0)
    audio_out_s = models.FloatField(default=0)

    class Meta:
        ordering = ("-at",)
        indexes = [models.Index(fields=["deployment", "at"])]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status_code} {self.latency_ms:.1f} ms"


class ColdStart(models.Model):
    """A request that arrived while its deployment had no READY replica and was held until one
    was: `held_ms` from arrival to a replica being ready for it, `first_byte_ms` from arrival to
    the answer's first byte (the cold start a client sees). Written in batches by the proxy."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="cold_starts")
    at = models.DateTimeField()
    endpoint = models.CharField(max_length=40)
    held_ms = models.FloatField()
    first_byte_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("-at",)
        indexes = [models.Index(fields=["deployment", "at"])]

    def __str__(self) -> str:
        return f"cold start of {self.deployment_id}: {self.first_byte_ms} ms"
