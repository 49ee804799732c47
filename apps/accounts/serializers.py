from rest_framework import serializers

from apps.accounts.models import ApiKey, ApiKeyScope, SshKey, User
from apps.accounts.ssh_keys import MAX_KEY_CHARS
from apps.core.serializers import StrictSerializer


class RegisterInput(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


class LoginInput(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class UserOutput(serializers.ModelSerializer):
    email_verified = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ("id", "email", "name", "email_verified", "is_staff", "date_joined")

    def get_email_verified(self, user: User) -> bool:
        return user.emailaddress_set.filter(verified=True).exists()  # type: ignore[attr-defined]


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    expires_in = serializers.IntegerField(help_text="Seconds until the token expires.")


class RegisterOutput(TokenOutput):
    user = UserOutput()


class ApiKeyCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices),
        required=False,
        allow_empty=False,
        help_text="What the key may do; default: every scope.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When the key stops working; default never."
    )


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
        )


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The full key. Shown once; store it now.")

    class Meta(ApiKeyOutput.Meta):
        fields = (*ApiKeyOutput.Meta.fields, "key")


class SshKeyInput(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    public_key = serializers.CharField(max_length=MAX_KEY_CHARS)


class SshKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = SshKey
        fields = ("id", "name", "public_key", "fingerprint", "created_at")
