from rest_framework import serializers

from apps.podconnect.models import PodAccessToken


class TokenCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class PodAccessTokenOutput(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = PodAccessToken
        fields: tuple[str, ...] = ("id", "name", "prefix", "created_at", "revoked_at", "active")

    def get_active(self, token: PodAccessToken) -> bool:
        return token.revoked_at is None


class PodAccessTokenCreatedOutput(PodAccessTokenOutput):
    token = serializers.CharField(help_text="The token itself: shown only in this answer.")

    class Meta(PodAccessTokenOutput.Meta):
        fields = (*PodAccessTokenOutput.Meta.fields, "token")
