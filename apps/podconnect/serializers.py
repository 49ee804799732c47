from rest_framework import serializers

from apps.podconnect.models import PodAccessToken


class TokenCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class TokenOutput(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = PodAccessToken
        fields: tuple[str, ...] = ("id", "name", "prefix", "created_at", "revoked_at", "active")

    def get_active(self, token: PodAccessToken) -> bool:
        return token.revoked_at is None


class TokenCreatedOutput(TokenOutput):
    token = serializers.CharField(help_text="The token itself: shown only in this answer.")

    class Meta(TokenOutput.Meta):
        fields = (*TokenOutput.Meta.fields, "token")
