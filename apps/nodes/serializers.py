"""Validation of the agent protocol (docs/agent-protocol.md) and the node API's output."""

from typing import Any

from rest_framework import serializers

from apps.core.serializers import StrictSerializer
from apps.nodes.models import REPORTED_CONTAINER_STATES, Gpu, Node

CONTAINER_STATES = [str(state) for state in REPORTED_CONTAINER_STATES]


class SystemInfoInput(StrictSerializer):
    cpu_model = serializers.CharField(max_length=255, allow_blank=True, required=False)
    cpu_cores = serializers.IntegerField(min_value=0, max_value=65536, required=False)
    ram_total_mb = serializers.IntegerField(min_value=0, max_value=2**40, required=False)
    disk_total_gb = serializers.FloatField(min_value=0, max_value=1e9, required=False)
    disk_free_gb = serializers.FloatField(min_value=0, max_value=1e9, required=False)
    os = serializers.CharField(max_length=128, allow_blank=True, required=False)
    kernel = serializers.CharField(max_length=128, allow_blank=True, required=False)
    docker_version = serializers.CharField(
        max_length=64, allow_blank=True, allow_null=True, required=False
    )
    address = serializers.CharField(
        max_length=64, allow_blank=True, allow_null=True, required=False
    )


class GpuInfoInput(StrictSerializer):
    index = serializers.IntegerField(min_value=0, max_value=255)
    uuid = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=128)
    memory_total_mb = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    mig_mode = serializers.BooleanField(default=False)


class NodeRegisterInput(StrictSerializer):
    registration_token = serializers.CharField(max_length=256)
    hostname = serializers.CharField(max_length=255)
    agent_version = serializers.CharField(max_length=32, allow_blank=True, required=False)
    provider_instance_id = serializers.CharField(
        max_length=128, allow_blank=True, allow_null=True, required=False
    )
    system = SystemInfoInput(required=False)
    driver_version = serializers.CharField(
        max_length=64, allow_blank=True, allow_null=True, required=False
    )
    cuda_version = serializers.CharField(
        max_length=16, allow_blank=True, allow_null=True, required=False
    )
    gpus = serializers.ListField(child=GpuInfoInput(), required=False, max_length=64)

    def validate_gpus(self, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
        indices = [g["index"] for g in gpus]
        if len(set(indices)) != len(indices):
            raise serializers.ValidationError("GPU indices must be unique.")
        return gpus


class GpuTelemetryInput(StrictSerializer):
    index = serializers.IntegerField(min_value=0, max_value=255)
    uuid = serializers.CharField(max_length=64, required=False)
    utilization_pct = serializers.FloatField(min_value=0, max_value=100, allow_null=True)
    memory_used_mb = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True)
    memory_total_mb = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, required=False
    )
    temperature_c = serializers.FloatField(min_value=-50, max_value=200, allow_null=True)
    power_w = serializers.FloatField(min_value=0, max_value=10000, allow_null=True)


class SystemTelemetryInput(StrictSerializer):
    cpu_percent = serializers.FloatField(min_value=0, max_value=100 * 4096, allow_null=True)
    ram_used_mb = serializers.IntegerField(min_value=0, max_value=2**40, allow_null=True)
    disk_free_gb = serializers.FloatField(min_value=0, max_value=1e9, allow_null=True)
    load_avg = serializers.FloatField(min_value=0, max_value=1e6, allow_null=True)


class ContainerStateInput(StrictSerializer):
    pod_id = serializers.UUIDField()
    container_id = serializers.CharField(max_length=80, allow_blank=True, allow_null=True)
    state = serializers.ChoiceField(choices=CONTAINER_STATES)
    exit_code = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1, allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True, required=False)
    finished_at = serializers.DateTimeField(allow_null=True, required=False)
    error = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")
    disk_used_bytes = serializers.IntegerField(
        min_value=0, max_value=2**62, allow_null=True, required=False
    )


class VolumeUsageInput(StrictSerializer):
    name = serializers.CharField(max_length=128)
    used_bytes = serializers.IntegerField(min_value=0, max_value=2**62)


class HeartbeatInput(StrictSerializer):
    gpus = serializers.ListField(child=GpuTelemetryInput(), max_length=64)
    system = SystemTelemetryInput()
    containers = serializers.ListField(child=ContainerStateInput(), max_length=1024)
    # Replay protection (apps/nodes/heartbeat_replay.py): required from agent 0.2.0 on.
    seq = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    sent_at = serializers.DateTimeField(required=False)
    volumes = serializers.ListField(
        child=VolumeUsageInput(), max_length=4096, required=False, default=list
    )


class CommandAckInput(StrictSerializer):
    status = serializers.ChoiceField(choices=("succeeded", "failed"))
    result = serializers.DictField(required=False, default=dict)
    error = serializers.CharField(max_length=4000, allow_blank=True, required=False, default="")


class GpuOutput(serializers.ModelSerializer):
    class Meta:
        model = Gpu
        fields = (
            "index",
            "uuid",
            "name",
            "model",
            "memory_total_mb",
            "mig_mode",
            "memory_used_mb",
            "utilization_pct",
            "temperature_c",
            "power_w",
            "telemetry_at",
        )


class NodeOutput(serializers.ModelSerializer):
    gpus = GpuOutput(many=True)

    class Meta:
        model = Node
        fields = (
            "id",
            "hostname",
            "status",
            "status_reason",
            "status_changed_at",
            "provider_id",
            "provider_instance_id",
            "agent_version",
            "address",
            "cpu_model",
            "cpu_cores",
            "ram_total_mb",
            "disk_total_gb",
            "disk_free_gb",
            "os",
            "kernel",
            "docker_version",
            "driver_version",
            "cuda_version",
            "cpu_percent",
            "ram_used_mb",
            "load_avg",
            "heartbeat_interval",
            "last_heartbeat_at",
            "registered_at",
            "price_per_gpu_hour",
            "gpus",
        )


class AvailableGpuOutput(serializers.Serializer):
    gpu_model = serializers.CharField()
    vram_mb = serializers.IntegerField()
    free_gpus = serializers.IntegerField()
    max_gpus_per_node = serializers.IntegerField()
    nodes = serializers.IntegerField()
    price_per_gpu_hour = serializers.IntegerField(help_text="Lowest price, micro-dollars.")
    price_per_gpu_hour_usd = serializers.CharField()
    # The one price list (own nodes and upstream offers): present when the pods app serves it.
    # (a declared field named `source` is popped by DRF's metaclass; only mypy sees a clash)
    source = serializers.CharField(required=False, help_text="own or upstream")  # type: ignore[assignment]
    provider_kind = serializers.CharField(required=False)
    provider = serializers.CharField(required=False, allow_blank=True)
    reliability = serializers.FloatField(required=False, allow_null=True)
    spot = serializers.BooleanField(required=False)


class NodeRegisterOutput(serializers.Serializer):
    node_id = serializers.UUIDField()
    node_token = serializers.CharField(help_text="Shown once; send it as X-Agent-API-Key.")
    heartbeat_interval = serializers.IntegerField()


class CommandOutput(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    payload = serializers.DictField()


class HeartbeatOutput(serializers.Serializer):
    heartbeat_interval = serializers.IntegerField()
    commands = CommandOutput(many=True)
    wanted_pod_ids = serializers.ListField(child=serializers.UUIDField())


class CommandAckOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
