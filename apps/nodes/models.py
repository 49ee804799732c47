"""GPU hosts running our agent, their GPUs, the workloads we want on them, and the commands
we send them. The node lifecycle (DESIGN.md §4) lives in `lifecycle.py`."""

import uuid

from django.db import models

from apps.core.models import StatusEvent


class NodeStatus(models.TextChoices):
    REGISTERING = "REGISTERING"
    ONLINE = "ONLINE"
    # Missed beats: no new pods, nothing else until the grace runs out (apps/nodes/liveness.py).
    SUSPECT = "SUSPECT"
    DRAINING = "DRAINING"
    OFFLINE = "OFFLINE"
    RETIRED = "RETIRED"


class NodeQuerySet(models.QuerySet):
    def schedulable(self) -> "NodeQuerySet":
        """Nodes that may take new pods: heartbeating and not draining."""
        return self.filter(status=NodeStatus.ONLINE)


class Node(models.Model):
    """One host running our agent. `provider_id` names the community provider the node was
    registered under (null: a platform node); the providers app turns it into its foreign key.
    The node authenticates with `token_digest` (SHA-256 of its `nt_…` token)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    hostname = models.CharField(max_length=255)
    status = models.CharField(
        max_length=16, choices=NodeStatus.choices, default=NodeStatus.REGISTERING
    )
    status_reason = models.CharField(max_length=255, blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    # While SUSPECT: the status a heartbeat brings the node back to (ONLINE or DRAINING).
    suspected_from = models.CharField(max_length=16, choices=NodeStatus.choices, blank=True)
    provider_id = models.UUIDField(null=True, blank=True, db_index=True)
    provider_instance_id = models.CharField(max_length=128, blank=True, db_index=True)

    token_prefix = models.CharField(max_length=16)
    token_digest = models.CharField(max_length=64, unique=True)

    agent_version = models.CharField(max_length=32, blank=True)
    address = models.CharField(max_length=64, blank=True)
    cpu_model = models.CharField(max_length=255, blank=True)
    cpu_cores = models.PositiveIntegerField(default=0)
    ram_total_mb = models.PositiveBigIntegerField(default=0)
    disk_total_gb = models.FloatField(default=0)
    disk_free_gb = models.FloatField(default=0)
    os = models.CharField(max_length=128, blank=True)
    kernel = models.CharField(max_length=128, blank=True)
    docker_version = models.CharField(max_length=64, blank=True)
    driver_version = models.CharField(max_length=64, blank=True)
    cuda_version = models.CharField(max_length=16, blank=True)

    # Latest telemetry (from the last heartbeat).
    cpu_percent = models.FloatField(null=True, blank=True)
    ram_used_mb = models.PositiveBigIntegerField(null=True, blank=True)
    load_avg = models.FloatField(null=True, blank=True)

    heartbeat_interval = models.PositiveIntegerField(default=10)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The highest heartbeat sequence accepted since the node's token was issued: a heartbeat
    # at or below it is a replay (apps/nodes/heartbeat_replay.py).
    last_heartbeat_seq = models.BigIntegerField(null=True, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    # Asking price per GPU-hour in micro-dollars (null: the platform default for its GPU model).
    price_per_gpu_hour = models.BigIntegerField(null=True, blank=True)
    # Operator settings: the share of the node's CPU and RAM that each GPU brings to a pod
    # (null: the node's totals divided by its GPU count; see apps.pods.resources).
    cpu_per_gpu_millicores = models.PositiveIntegerField(null=True, blank=True)
    ram_per_gpu_mb = models.PositiveBigIntegerField(null=True, blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ("hostname", "registered_at")
        indexes = [models.Index(fields=["status", "last_heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.status})"

    @property
    def is_cpu_only(self) -> bool:
        return not self.gpus.exists()


class NodeEvent(StatusEvent):
    """A status transition of a node, with the reason an operator can read."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=NodeStatus.choices)
    to_status = models.CharField(max_length=16, choices=NodeStatus.choices)
    reason = models.CharField(max_length=255)

    class Meta(StatusEvent.Meta):
        ordering = ("-at", "-id")


class Credential(models.TextChoices):
    PROVIDER_KEY = "provider_key"
    BOOTSTRAP = "bootstrap"
    INSTANCE = "instance"
    INTERNAL = "internal"  # registered by the platform's own code, not over the API


class NodeRegistration(models.Model):
    """One registration (or re-keying) of a node: which credential, from where. The provider
    sees the registrations of its nodes: a reusable `pk_…` key used by someone else shows."""

    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="registrations")
    at = models.DateTimeField(auto_now_add=True)
    credential = models.CharField(max_length=16, choices=Credential.choices)
    credential_prefix = models.CharField(max_length=16, blank=True)
    source_ip = models.CharField(max_length=64, blank=True)
    hostname = models.CharField(max_length=255)
    rekeyed = models.BooleanField(default=False)  # an existing node was given a new token

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.node_id} via {self.credential} from {self.source_ip or '?'}"


class RegistrationTokenUse(models.Model):
    """How often a limited registration token (the bootstrap token, a rented machine's
    `sit_…`) has registered a node, by the token's digest. Locked while a registration claims
    a use, so two agents racing with one token cannot both get in."""

    digest = models.CharField(max_length=64, primary_key=True)
    credential = models.CharField(max_length=16, choices=Credential.choices)
    uses = models.PositiveIntegerField(default=0)
    first_used_at = models.DateTimeField()
    last_used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.credential} token used {self.uses}x"


class LivenessState(models.Model):
    """The liveness sweep's memory, one row (pk 1): when it last ran, and the mass-silence
    guard (apps/nodes/liveness.py). Locked by each sweep, so two sweeps never judge at once."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    last_sweep_at = models.DateTimeField(null=True, blank=True)
    grace_epoch = models.DateTimeField(null=True, blank=True)
    guard_since = models.DateTimeField(null=True, blank=True)
    guard_reason = models.CharField(max_length=255, blank=True)
    operator_release = models.BooleanField(default=False)

    class Meta:
        verbose_name = "liveness guard"

    def __str__(self) -> str:
        return f"guarding since {self.guard_since}" if self.guard_since else "not guarding"


class FleetAlert(models.Model):
    """One episode of the mass-silence guard: raised once when it engages, ended when it lets
    go. Shown as a banner in the admin and mailed to staff; the count is the metric."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32)
    message = models.CharField(max_length=255)
    silent_nodes = models.PositiveIntegerField()
    fleet_nodes = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-id")

    def __str__(self) -> str:
        return f"{self.kind} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.message}"


class Gpu(models.Model):
    """One GPU device of a node, with its latest telemetry. `model` is the normalised name
    users ask for (e.g. "H100 80GB"); `name` is what the driver reports."""

    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=64)
    name = models.CharField(max_length=128)
    model = models.CharField(max_length=64, db_index=True)
    memory_total_mb = models.PositiveIntegerField()
    mig_mode = models.BooleanField(default=False)
    memory_used_mb = models.PositiveIntegerField(null=True, blank=True)
    utilization_pct = models.FloatField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    telemetry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("node", "index")
        constraints = [
            models.UniqueConstraint(fields=["node", "index"], name="gpu_unique_index_per_node")
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.index}"


class WorkloadState(models.TextChoices):
    """What a workload's container is, as its agent reports it (Docker's states, plus
    "missing": no such container) or as a finished stop command records it ("removed",
    "failed"). Not a field's choices: the column keeps whatever the agent sent."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    MISSING = "missing"
    REMOVED = "removed"
    FAILED = "failed"


# What an agent may report in a heartbeat.
REPORTED_CONTAINER_STATES = (
    WorkloadState.CREATED,
    WorkloadState.RUNNING,
    WorkloadState.RESTARTING,
    WorkloadState.PAUSED,
    WorkloadState.EXITED,
    WorkloadState.DEAD,
    WorkloadState.MISSING,
)


class Workload(models.Model):
    """A pod we want on a node (`wanted`) and what the agent last reported of its container.
    The pods app reads the observed state; the agent stops containers that are not wanted."""

    id = models.BigAutoField(primary_key=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="workloads")
    pod_id = models.UUIDField()
    wanted = models.BooleanField(default=True)
    gpu_indices = models.JSONField(default=list)
    container_id = models.CharField(max_length=80, blank=True)
    state = models.CharField(max_length=16, blank=True)  # Docker's, or "missing"/"removed"
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    # The container's writable layer as the agent last measured it (null: not measured yet).
    disk_used_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["node", "pod_id"], name="workload_unique_pod_per_node")
        ]

    def __str__(self) -> str:
        return f"pod {self.pod_id} on {self.node_id}: {self.state or 'unreported'}"


class CommandType(models.TextChoices):
    START_POD = "start_pod"
    STOP_POD = "stop_pod"
    FETCH_LOGS = "fetch_logs"
    OPEN_TERMINAL = "open_terminal"
    CREATE_VOLUME = "create_volume"
    DELETE_VOLUME = "delete_volume"


class CommandStatus(models.TextChoices):
    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    ACKED = "ACKED"
    FAILED = "FAILED"


class NodeCommand(models.Model):
    """An instruction for a node's agent, delivered in heartbeat answers until acked.
    Idempotent by id: the agent may see a command twice and acts once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="commands")
    type = models.CharField(max_length=32, choices=CommandType.choices)
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=CommandStatus.choices, default=CommandStatus.QUEUED
    )
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    deliveries = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)
        indexes = [models.Index(fields=["node", "status"])]

    def __str__(self) -> str:
        return f"{self.type} → {self.node_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in (CommandStatus.ACKED, CommandStatus.FAILED)
