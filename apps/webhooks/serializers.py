from rest_framework import serializers

from apps.core.serializers import StrictSerializer
from apps.webhooks.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointInput(StrictSerializer):
    url = serializers.URLField(max_length=2000)
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        required=False,
        allow_empty=False,
        help_text="Which events to send; default: all of them.",
    )


class EndpointOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields: tuple[str, ...] = (
            "id",
            "url",
            "description",
            "event_types",
            "secret_prefix",
            "created_at",
            "disabled_at",
        )


class EndpointCreatedOutput(EndpointOutput):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_…). Shown once; verify X-GCO-Signature with it."
    )

    class Meta(EndpointOutput.Meta):
        fields = (*EndpointOutput.Meta.fields, "secret")


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ("attempt", "at", "status_code", "error", "duration_ms")


class DeliveryOutput(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.id")
    event_type = serializers.CharField(source="event.type")
    event_data = serializers.JSONField(source="event.data")
    log = AttemptOutput(many=True)

    class Meta:
        model = WebhookDelivery
        fields = (
            "id",
            "event_id",
            "event_type",
            "event_data",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "log",
        )
