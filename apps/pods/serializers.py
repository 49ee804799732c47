from decimal import Decimal

from rest_framework import serializers

from apps.core.gpu_models import CPU_MODEL
from apps.core.money import micros_to_usd, usd_to_micros
from apps.core.serializers import StrictSerializer
from apps.pods.models import Pod, PodEvent, UsageRecord
from apps.pods.scheduler import known_gpu_models, lowest_price
from apps.pods.ssh import ssh_command

MAX_GPUS = 8


class PortInput(StrictSerializer):
    container_port = serializers.IntegerField(min_value=1, max_value=65535)
    protocol = serializers.ChoiceField(choices=("tcp", "udp"), default="tcp")


class PodCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    image = serializers.CharField(max_length=255)
    command = serializers.ListField(
        child=serializers.CharField(max_length=4096),
        max_length=64,
        required=False,
        allow_null=True,
        default=None,
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=8192, allow_blank=True),
        required=False,
        default=dict,
    )
    ports = serializers.ListField(child=PortInput(), max_length=16, required=False, default=list)
    gpu_model = serializers.CharField(max_length=64)
    gpu_count = serializers.IntegerField(min_value=0, max_value=MAX_GPUS)
    min_vram_mb = serializers.IntegerField(min_value=0, max_value=1_048_576, default=0)
    disk_gb = serializers.IntegerField(min_value=1, max_value=10_000, default=20)
    price_cap_per_gpu_hour_usd = serializers.DecimalField(
        max_digits=8, decimal_places=6, min_value=0, required=False, allow_null=True, default=None
    )
    restartable = serializers.BooleanField(default=False)
    vcpus = serializers.DecimalField(
        max_digits=7,
        decimal_places=3,
        min_value=Decimal("0.1"),
        max_value=4096,
        required=False,
        allow_null=True,
        default=None,
        help_text="CPU cores to reserve (default: the GPUs' share of the node).",
    )
    memory_mb = serializers.IntegerField(
        min_value=16,
        max_value=16 * 1024 * 1024,
        required=False,
        allow_null=True,
        default=None,
        help_text="RAM to reserve, MB (default: the GPUs' share of the node).",
    )
    shm_mb = serializers.IntegerField(
        min_value=1,
        max_value=16 * 1024 * 1024,
        required=False,
        allow_null=True,
        default=None,
        help_text="Shared memory (shm) size, MB (default: half the memory).",
    )

    def validate_env(self, env: dict[str, str]) -> dict[str, str]:
        if len(env) > 128:
            raise serializers.ValidationError("At most 128 variables.")
        bad = [
            k
            for k in env
            if not k
            or not (k[0].isalpha() or k[0] == "_")
            or not all(c.isalnum() or c == "_" for c in k)
        ]
        if bad:
            raise serializers.ValidationError(f"Invalid variable name(s): {', '.join(bad)}.")
        return env

    def validate_gpu_model(self, model: str) -> str:
        known = known_gpu_models()
        if model not in known:
            raise serializers.ValidationError(
                f"Unknown GPU model {model!r}; known models: {', '.join(sorted(known))}."
            )
        return model

    def validate(self, data: dict) -> dict:
        if (data["gpu_model"] == CPU_MODEL) != (data["gpu_count"] == 0):
            raise serializers.ValidationError(
                {
                    "gpu_count": f"Use gpu_count 0 with gpu_model {CPU_MODEL!r} (a CPU pod), "
                    "and at least 1 with a GPU model."
                }
            )
        vcpus = data.pop("vcpus", None)
        data["cpu_request_millicores"] = int(vcpus * 1000) if vcpus is not None else None
        data["memory_request_mb"] = data.pop("memory_mb", None)
        data["shm_request_mb"] = data.pop("shm_mb", None)
        if (
            data["shm_request_mb"] is not None
            and data["memory_request_mb"] is not None
            and data["shm_request_mb"] > data["memory_request_mb"]
        ):
            raise serializers.ValidationError(
                {"shm_mb": "Shared memory counts against the pod's memory: at most memory_mb."}
            )
        cap = data.pop("price_cap_per_gpu_hour_usd", None)
        data["price_cap_per_gpu_hour"] = usd_to_micros(cap) if cap is not None else None
        if data["price_cap_per_gpu_hour"] is not None:
            cheapest = lowest_price(data["gpu_model"])
            if cheapest is not None and data["price_cap_per_gpu_hour"] < cheapest:
                raise serializers.ValidationError(
                    {
                        "price_cap_per_gpu_hour_usd": (
                            f"${micros_to_usd(data['price_cap_per_gpu_hour'], 6)}/GPU-h is below "
                            f"the lowest offer for {data['gpu_model']} "
                            f"(${micros_to_usd(cheapest)}/GPU-h)."
                        )
                    }
                )
        return data


class PodOutput(serializers.ModelSerializer):
    node = serializers.SerializerMethodField()
    price_per_gpu_hour_usd = serializers.SerializerMethodField()
    vcpus = serializers.SerializerMethodField()
    ssh_command = serializers.SerializerMethodField()

    class Meta:
        model = Pod
        fields = (
            "id",
            "name",
            "image",
            "command",
            "env",
            "ports",
            "gpu_model",
            "gpu_count",
            "min_vram_mb",
            "disk_gb",
            "price_cap_per_gpu_hour",
            "restartable",
            "status",
            "status_reason",
            "node",
            "gpu_indices",
            "price_per_gpu_hour",
            "price_per_gpu_hour_usd",
            "endpoints",
            "ssh_command",
            "vcpus",
            "memory_mb",
            "shm_mb",
            "cpu_request_millicores",
            "memory_request_mb",
            "oom_killed",
            "volume",
            "volume_mount_path",
            "template",
            "created_at",
            "started_at",
            "stopped_at",
            "billed_until",
        )

    def get_node(self, pod: Pod) -> dict | None:
        if pod.node_id is None:
            return None
        return {"id": str(pod.node_id), "hostname": pod.node.hostname}  # type: ignore[union-attr]

    def get_vcpus(self, pod: Pod) -> float | None:
        return pod.cpu_millicores / 1000 if pod.cpu_millicores else None

    def get_ssh_command(self, pod: Pod) -> str | None:
        return ssh_command(pod.endpoints)

    def get_price_per_gpu_hour_usd(self, pod: Pod) -> str | None:
        return None if pod.price_per_gpu_hour is None else micros_to_usd(pod.price_per_gpu_hour)


class PodEventOutput(serializers.ModelSerializer):
    class Meta:
        model = PodEvent
        fields = ("at", "from_status", "to_status", "reason")


class UsageOutput(serializers.ModelSerializer):
    class Meta:
        model = UsageRecord
        fields = (
            "pod",
            "period_start",
            "period_end",
            "seconds",
            "gpu_count",
            "price_per_gpu_hour",
            "amount",
        )
