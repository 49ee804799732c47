from dataclasses import replace
from typing import Any

from rest_framework import serializers

from apps.catalog.models import (
    Capability,
    Deployment,
    DeploymentEvent,
    DeploymentKey,
    ModelCategory,
    ModelTemplate,
    Replica,
)
from apps.catalog.services.scaling import (
    DEFAULT_SCALING,
    SCALING_FIELDS,
    ScalingSettingsError,
    scaling_validate,
)
from apps.core.gpu_models import CANONICAL
from apps.core.money import micros_to_usd, usd_to_micros
from apps.core.serializers import env_names_checked
from apps.pods.scheduler import known_gpu_models


class TemplateOutput(serializers.ModelSerializer):
    class Meta:
        model = ModelTemplate
        fields = (
            "slug",
            "name",
            "description",
            "category",
            "capabilities",
            "served_model",
            "image",
            "args",
            "env",
            "port",
            "health_path",
            "min_vram_gb",
            "recommended_vram_gb",
            "recommended_gpu",
            "gpu_count",
        )


class TemplateFilterInput(serializers.Serializer):
    category = serializers.ChoiceField(choices=ModelCategory.choices, required=False)
    capability = serializers.ChoiceField(choices=Capability.choices, required=False)
    max_vram_gb = serializers.IntegerField(min_value=0, required=False)
    gpu = serializers.CharField(max_length=64, required=False)
    search = serializers.CharField(max_length=100, required=False)


class OverridesInput(serializers.Serializer):
    args = serializers.ListField(
        child=serializers.CharField(max_length=4096), max_length=64, required=False
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=8192, allow_blank=True), required=False
    )
    health_path = serializers.RegexField(r"^/[\x21-\x7e]{0,199}$", required=False)

    def validate_env(self, env: dict[str, str]) -> dict[str, str]:
        return env_names_checked(env)


class DeployInput(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", required=False)
    model_name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$", required=False)
    gpu_model = serializers.CharField(max_length=64, required=False)
    gpu_count = serializers.IntegerField(min_value=0, max_value=8, required=False)
    # Without it: 1, or min_replicas when that is given (0 starts scaled to zero).
    replicas = serializers.IntegerField(min_value=0, max_value=8, required=False)
    overrides = OverridesInput(required=False)
    price_cap_per_gpu_hour_usd = serializers.DecimalField(
        max_digits=8, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False
    )
    min_replicas = serializers.IntegerField(required=False)
    max_replicas = serializers.IntegerField(required=False)
    target_concurrency = serializers.IntegerField(required=False)
    scale_down_delay_s = serializers.IntegerField(required=False)
    max_queue = serializers.IntegerField(required=False)
    queue_timeout_s = serializers.IntegerField(required=False)

    def validate_replicas(self, replicas: int) -> int:
        if replicas == 0 and self.initial_data.get("min_replicas") != 0:
            raise serializers.ValidationError(
                "0 replicas needs min_replicas 0 (a deployment that scales to zero)."
            )
        return replicas

    def validate_gpu_model(self, model: str) -> str:
        known = known_gpu_models()
        if model not in known:
            raise serializers.ValidationError(
                f"Unknown GPU model {model!r}; known models: {', '.join(sorted(known))}."
            )
        return model

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        template: ModelTemplate = self.context["template"]
        scaling = {name: data.pop(name) for name in SCALING_FIELDS if name in data}
        if scaling:
            replicas = data.get("replicas", scaling.get("min_replicas", 1))  # as deploying does
            try:
                scaling_validate(
                    current=replace(DEFAULT_SCALING, min_replicas=replicas, max_replicas=replicas),
                    changes=scaling,
                )
            except ScalingSettingsError as exc:
                raise serializers.ValidationError({exc.field: exc.message}) from exc
            data["scaling"] = scaling
        price = data.pop("price_cap_per_gpu_hour_usd", None)
        data["price_cap_per_gpu_hour"] = None if price is None else usd_to_micros(price)
        count = data.get("gpu_count", template.gpu_count)
        if template.gpu_count and count == 0:
            raise serializers.ValidationError(
                {"gpu_count": f"{template.name} needs at least one GPU."}
            )
        if template.gpu_count == 0 and count:
            raise serializers.ValidationError({"gpu_count": f"{template.name} runs on CPU only."})
        gpu = CANONICAL.get(data.get("gpu_model", ""))
        if gpu is not None and gpu.vram_gb < template.min_vram_gb:
            raise serializers.ValidationError(
                {
                    "gpu_model": f"{gpu.name} has {gpu.vram_gb} GB; {template.name} needs at "
                    f"least {template.min_vram_gb} GB per GPU (recommended: "
                    f"{template.recommended_gpu})."
                }
            )
        return data


class ScalingInput(serializers.Serializer):
    """PATCH of a deployment's scaling settings: any subset; unknown fields are refused."""

    min_replicas = serializers.IntegerField(required=False)
    max_replicas = serializers.IntegerField(required=False)
    target_concurrency = serializers.IntegerField(required=False)
    scale_down_delay_s = serializers.IntegerField(required=False)
    max_queue = serializers.IntegerField(required=False)
    queue_timeout_s = serializers.IntegerField(required=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(SCALING_FIELDS))
        if unknown:
            raise serializers.ValidationError(
                {
                    unknown[0]: "Not a scaling setting; these can change: "
                    + ", ".join(SCALING_FIELDS)
                }
            )
        if not data:
            raise serializers.ValidationError(
                {"non_field_errors": "Send at least one of: " + ", ".join(SCALING_FIELDS)}
            )
        return data


class ReplicaOutput(serializers.ModelSerializer):
    pod_status = serializers.CharField(source="pod.status", default=None, allow_null=True)

    class Meta:
        model = Replica
        fields = (
            "id",
            "status",
            "status_reason",
            "pod",
            "pod_status",
            "last_health_at",
            "ready_at",
            "draining_at",
        )


class KeyOutput(serializers.ModelSerializer):
    class Meta:
        model = DeploymentKey
        fields = (
            "id",
            "name",
            "prefix",
            "monthly_token_budget",
            "rate_limit_per_minute",
            "created_at",
            "revoked_at",
        )


class KeyCreateInput(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$", default="default")
    monthly_token_budget = serializers.IntegerField(
        min_value=0, max_value=10**15, required=False, allow_null=True
    )
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False, allow_null=True
    )


class KeyUpdateInput(serializers.Serializer):
    monthly_token_budget = serializers.IntegerField(
        min_value=0, max_value=10**15, required=False, allow_null=True
    )
    rate_limit_per_minute = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False, allow_null=True
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {unknown[0]: "Only monthly_token_budget and rate_limit_per_minute can change."}
            )
        if not data:
            raise serializers.ValidationError(
                {"non_field_errors": "Send monthly_token_budget or rate_limit_per_minute."}
            )
        return data


class DeploymentOutput(serializers.ModelSerializer):
    template = serializers.CharField(source="template.slug")
    replica_set = ReplicaOutput(many=True)
    keys = serializers.SerializerMethodField()
    price_cap_per_gpu_hour_usd = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = (
            "id",
            "name",
            "template",
            "model_name",
            "capabilities",
            "status",
            "status_reason",
            "image",
            "args",
            "env",
            "health_path",
            "gpu_model",
            "gpu_count",
            "replicas",
            "min_replicas",
            "max_replicas",
            "target_concurrency",
            "scale_down_delay_s",
            "max_queue",
            "queue_timeout_s",
            "rate_limit_per_minute",
            "price_cap_per_gpu_hour_usd",
            "replica_set",
            "keys",
            "created_at",
            "ready_at",
            "stopped_at",
        )

    def get_keys(self, deployment: Deployment) -> list[dict[str, Any]]:
        return KeyOutput([k for k in deployment.keys.all() if k.revoked_at is None], many=True).data  # type: ignore[return-value]

    def get_price_cap_per_gpu_hour_usd(self, deployment: Deployment) -> str | None:
        cap = deployment.price_cap_per_gpu_hour
        return None if cap is None else micros_to_usd(cap, 6)


class DeploymentEventOutput(serializers.ModelSerializer):
    class Meta:
        model = DeploymentEvent
        fields = ("at", "from_status", "to_status", "reason")
