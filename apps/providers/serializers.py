from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.core.money import micros_to_usd, usd_to_micros
from apps.core.serializers import StrictSerializer
from apps.providers.addresses import normalise_details, payout_details_problems
from apps.providers.models import Payout, PayoutMethod, Provider, ProviderKey, tier_fee_percent


def validated_details(method: str, details: Any) -> dict[str, Any]:
    """`details` for `method`, normalised; a 400 naming each bad field otherwise."""
    problems = payout_details_problems(method, details)
    if problems:
        raise serializers.ValidationError({p.field: p.message for p in problems})
    return normalise_details(method, details)


class PayoutMethodMixin:
    """`payout_method` and `payout_details` validated together (both or neither)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        method = attrs.get("payout_method")
        details = attrs.get("payout_details")
        if method is None and details is None:
            return attrs
        if not method:
            raise serializers.ValidationError({"payout_method": "CRYPTO or PAYPAL."})
        problems = payout_details_problems(method, details if details is not None else {})
        if problems:
            raise serializers.ValidationError(
                {p.field.replace("details", "payout_details", 1): p.message for p in problems}
            )
        attrs["payout_details"] = normalise_details(method, details or {})
        return attrs


class ProviderRegisterInput(PayoutMethodMixin, StrictSerializer):
    display_name = serializers.CharField(max_length=100)
    payout_method = serializers.ChoiceField(choices=PayoutMethod.choices, required=False)
    payout_details = serializers.JSONField(required=False)


class ProviderUpdateInput(PayoutMethodMixin, StrictSerializer):
    display_name = serializers.CharField(max_length=100, required=False)
    payout_method = serializers.ChoiceField(choices=PayoutMethod.choices, required=False)
    payout_details = serializers.JSONField(required=False)


class ProviderOutput(serializers.ModelSerializer):
    fee_percent = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = (
            "id",
            "display_name",
            "tier",
            "fee_percent",
            "verification",
            "payout_method",
            "payout_details",
            "created_at",
        )

    def get_fee_percent(self, provider: Provider) -> int:
        return tier_fee_percent(provider.tier)


class ProviderKeyInput(StrictSerializer):
    name = serializers.CharField(max_length=100)


class ProviderKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ProviderKey
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "revoked_at",
        )


class IssuedKeyOutput(ProviderKeyOutput):
    key = serializers.CharField(help_text="The whole key, shown this once: pk_…")

    class Meta(ProviderKeyOutput.Meta):
        fields: tuple[str, ...] = (*ProviderKeyOutput.Meta.fields, "key")


class PricingInput(StrictSerializer):
    price_per_gpu_hour = serializers.IntegerField(
        min_value=1, help_text="Micro-dollars per GPU-hour (1 USD = 1,000,000)."
    )


class ProviderNodeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    hostname = serializers.CharField()
    status = serializers.CharField()
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    registered_at = serializers.DateTimeField()
    price_per_gpu_hour = serializers.IntegerField(allow_null=True)
    gpus = serializers.SerializerMethodField()
    gpus_rented = serializers.IntegerField()
    gpu_utilization_pct = serializers.SerializerMethodField()
    registrations = serializers.SerializerMethodField(
        help_text="Every registration of this node, newest first: when, with which key "
        "(its first characters), from which address, and whether it re-keyed the node."
    )

    def get_registrations(self, node: Any) -> list[dict[str, Any]]:
        return [
            {
                "at": r.at.isoformat(),
                "credential": r.credential,
                "credential_prefix": r.credential_prefix,
                "source_ip": r.source_ip,
                "hostname": r.hostname,
                "rekeyed": r.rekeyed,
            }
            for r in node.registrations.all()
        ]

    def get_gpus(self, node: Any) -> list[dict[str, Any]]:
        return [
            {
                "index": g.index,
                "model": g.model,
                "memory_total_mb": g.memory_total_mb,
                "utilization_pct": g.utilization_pct,
                "temperature_c": g.temperature_c,
            }
            for g in node.gpus.all()
        ]

    def get_gpu_utilization_pct(self, node: Any) -> float | None:
        return None if node.gpu_utilization is None else round(node.gpu_utilization, 1)


class PayoutRequestInput(StrictSerializer):
    amount_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text='US dollars with at most two decimals, as a string: "25.00".',
        error_messages={
            "min_value": "The amount must be positive.",
            "max_decimal_places": "Use at most 2 decimal places (whole cents).",
        },
    )
    method = serializers.ChoiceField(choices=PayoutMethod.choices, required=False)
    details = serializers.JSONField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        provider: Provider = self.context["provider"]
        method = attrs.get("method") or provider.payout_method
        if not method:
            raise serializers.ValidationError(
                {"method": "Choose a payout method here or in your provider profile."}
            )
        details = attrs.get("details")
        if details is None:
            if method != provider.payout_method:
                raise serializers.ValidationError({"details": "Give the details for this method."})
            details = provider.payout_details
        attrs["method"] = method
        attrs["details"] = validated_details(method, details)
        attrs["amount"] = usd_to_micros(attrs.pop("amount_usd"))
        return attrs


class PayoutOutput(serializers.ModelSerializer):
    amount_usd = serializers.SerializerMethodField()

    class Meta:
        model = Payout
        fields = (
            "id",
            "amount",
            "amount_usd",
            "method",
            "details",
            "status",
            "status_reason",
            "gateway_ref",
            "tx_hash",
            "created_at",
            "approved_at",
            "sent_at",
            "finished_at",
        )

    def get_amount_usd(self, payout: Payout) -> str:
        return micros_to_usd(payout.amount)


class DashboardOutput(serializers.Serializer):
    earnings = serializers.DictField(child=serializers.IntegerField())
    balances = serializers.DictField(child=serializers.IntegerField())
    nodes = serializers.ListField(child=serializers.DictField())
