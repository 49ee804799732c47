from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.gpu_models import CPU_MODEL
from apps.core.money import micros_to_usd, usd_to_micros
from apps.core.serializers import StrictSerializer, env_names_checked
from apps.nodes.models import Node, NodeStatus
from apps.pods.models import (
    Pod,
    PodCloud,
    PodEvent,
    PodRestart,
    PodStrategy,
    PodTemplate,
    UsageRecord,
    Volume,
)
from apps.pods.pod_templates import find_template, template_defaults
from apps.pods.scheduler import known_gpu_models, lowest_price
from apps.pods.ssh import ssh_command
from apps.pods.volumes import HOLDING_STATUSES, mount_path_problem

MAX_ENV_VARS = 128  # per pod or template

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
    # Where and how it is placed (docs/pods.md "Choosing where a pod runs").
    cloud = serializers.ChoiceField(choices=PodCloud.choices, default=PodCloud.ANY)
    strategy = serializers.ChoiceField(choices=PodStrategy.choices, default=PodStrategy.BALANCED)
    interruptible = serializers.BooleanField(default=False)
    bid_cap_per_gpu_hour_usd = serializers.DecimalField(
        max_digits=8, decimal_places=6, min_value=0, required=False, allow_null=True, default=None
    )
    restart = serializers.ChoiceField(choices=PodRestart.choices, default=PodRestart.NEVER)
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
    volume = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A volume of yours to mount."
    )
    volume_mount_path = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="Where the volume mounts (default: the template's, else /workspace).",
    )
    template = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="A template's id or public slug; its values are defaults this request "
        "overrides (env is merged, the request's variables winning).",
    )
    shm_mb = serializers.IntegerField(
        min_value=1,
        max_value=16 * 1024 * 1024,
        required=False,
        allow_null=True,
        default=None,
        help_text="Shared memory (shm) size, MB (default: half the memory).",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping) and data.get("template"):
            template = find_template(user=self.context.get("user"), ref=str(data["template"]))
            if template is None:
                raise serializers.ValidationError(
                    {"template": f"No template {data['template']!r} of yours or public."}
                )
            data = {**template_defaults(template), **data}
            data["env"] = {**(template.env or {}), **(data.get("env") or {})}
            self._template = template
        return super().to_internal_value(data)

    def validate_volume_mount_path(self, path: str) -> str:
        problem = mount_path_problem(path) if path else ""
        if problem:
            raise serializers.ValidationError(problem)
        return path

    def validate_env(self, env: dict[str, str]) -> dict[str, str]:
        return env_names_checked(env, max_vars=MAX_ENV_VARS)

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
        data = validate_placement(data)
        data["template"] = getattr(self, "_template", None)
        volume_id = data.pop("volume", None)
        data["volume"] = None
        if volume_id is not None:
            user = self.context.get("user")
            volume = Volume.objects.for_user(user).filter(pk=volume_id).first() if user else None
            if volume is None:
                raise serializers.ValidationError({"volume": "No such volume of yours."})
            data["volume"] = volume
            if not data.get("volume_mount_path"):
                template = data["template"]
                data["volume_mount_path"] = (
                    template.volume_mount_path if template else settings.VOLUME_DEFAULT_MOUNT_PATH
                )
        elif data.get("volume_mount_path"):
            raise serializers.ValidationError(
                {"volume_mount_path": "Only with a volume: name one in `volume`."}
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


def validate_placement(data: dict) -> dict:
    """Spot needs an upstream cloud with a bid market and a GPU; a bid cap or
    `restart: on-interruption` without spot means nothing."""
    bid = data.pop("bid_cap_per_gpu_hour_usd", None)
    data["bid_cap_per_gpu_hour"] = usd_to_micros(bid) if bid is not None else None
    if data.get("interruptible"):
        if data.get("cloud") == PodCloud.OWN:
            raise serializers.ValidationError(
                {
                    "interruptible": "Spot pods run on upstream clouds: use cloud 'upstream' or "
                    "'any', or leave interruptible false."
                }
            )
        if data.get("gpu_count") == 0:
            raise serializers.ValidationError(
                {"interruptible": "Spot capacity is GPU capacity: ask for at least one GPU."}
            )
    else:
        if data["bid_cap_per_gpu_hour"] is not None:
            raise serializers.ValidationError(
                {
                    "bid_cap_per_gpu_hour_usd": "A bid cap applies to spot pods only: set "
                    "interruptible true."
                }
            )
        if data.get("restart") == PodRestart.ON_INTERRUPTION:
            raise serializers.ValidationError(
                {"restart": "'on-interruption' applies to spot pods only: set interruptible true."}
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
            "cloud",
            "strategy",
            "interruptible",
            "bid_cap_per_gpu_hour",
            "restart",
            "interruptions",
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


class VolumeCreateInput(StrictSerializer):
    name = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$",
        max_length=100,
        error_messages={"invalid": "Letters, digits, spaces, '.', '_' and '-' (at most 100)."},
    )
    size_gb = serializers.IntegerField(min_value=1, max_value=1_000_000)
    node = serializers.UUIDField(required=False, allow_null=True, default=None)
    gpu_model = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")

    def validate_node(self, node_id: Any) -> Node | None:
        if node_id is None:
            return None
        node = Node.objects.exclude(status=NodeStatus.RETIRED).filter(pk=node_id).first()
        if node is None:
            raise serializers.ValidationError("No such node.")
        return node

    def validate_gpu_model(self, model: str) -> str:
        if model and model not in known_gpu_models():
            raise serializers.ValidationError(f"Unknown GPU model {model!r}.")
        return model


class VolumeOutput(serializers.ModelSerializer):
    node = serializers.SerializerMethodField()
    price_per_gb_month_usd = serializers.SerializerMethodField()
    attached_pods = serializers.SerializerMethodField()

    class Meta:
        model = Volume
        fields = (
            "id",
            "name",
            "size_gb",
            "node",
            "status",
            "status_reason",
            "used_bytes",
            "measured_at",
            "price_per_gb_month",
            "price_per_gb_month_usd",
            "billed_minutes",
            "billed_amount",
            "attached_pods",
            "created_at",
            "deleted_at",
        )

    def get_node(self, volume: Volume) -> dict[str, str]:
        return {"id": str(volume.node_id), "hostname": volume.node.hostname}

    def get_price_per_gb_month_usd(self, volume: Volume) -> str:
        return micros_to_usd(volume.price_per_gb_month, 6)

    def get_attached_pods(self, volume: Volume) -> list[str]:
        return [str(p.pk) for p in volume.pods.all() if p.status in HOLDING_STATUSES]


class PodTemplateCreateInput(StrictSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    image = serializers.CharField(max_length=255)
    command = serializers.ListField(
        child=serializers.CharField(max_length=4096), max_length=64, required=False, allow_null=True
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=8192, allow_blank=True), required=False
    )
    ports = serializers.ListField(child=PortInput(), max_length=16, required=False)
    volume_mount_path = serializers.CharField(max_length=255, required=False)
    recommended_gpu_model = serializers.CharField(max_length=64, required=False, allow_blank=True)

    def validate_slug(self, slug: str) -> str:
        user = self.context.get("user")
        if PodTemplate.objects.filter(owner=user, slug=slug).exists():
            raise serializers.ValidationError("You already have a template with this slug.")
        return slug

    def validate_env(self, env: dict[str, str]) -> dict[str, str]:
        return env_names_checked(env, max_vars=MAX_ENV_VARS)

    def validate_volume_mount_path(self, path: str) -> str:
        problem = mount_path_problem(path)
        if problem:
            raise serializers.ValidationError(problem)
        return path

    def validate_recommended_gpu_model(self, model: str) -> str:
        if model and model not in known_gpu_models():
            raise serializers.ValidationError(f"Unknown GPU model {model!r}.")
        return model


class PodTemplateOutput(serializers.ModelSerializer):
    public = serializers.SerializerMethodField()

    class Meta:
        model = PodTemplate
        fields = (
            "id",
            "slug",
            "name",
            "description",
            "image",
            "command",
            "env",
            "ports",
            "volume_mount_path",
            "recommended_gpu_model",
            "public",
            "created_at",
        )

    def get_public(self, template: PodTemplate) -> bool:
        return template.owner_id is None
