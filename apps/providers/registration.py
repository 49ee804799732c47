"""The nodes app's registration hook for provider keys: a `pk_…` key that is not revoked
registers the node under its provider (settings.NODE_REGISTRATION_RESOLVERS)."""

from django.utils import timezone

from apps.core.secrets import secret_digest
from apps.nodes.models import Credential
from apps.nodes.registration import RegistrationGrant, credential_prefix
from apps.providers.models import ProviderKey
from apps.providers.services.keys import PROVIDER_KEY_PREFIX


def provider_key_grant(raw_token: str) -> RegistrationGrant | None:
    """The provider a raw `pk_…` key belongs to, or None (not ours, unknown or revoked).
    Looked up by digest, so nothing is compared byte by byte."""
    if not raw_token.startswith(PROVIDER_KEY_PREFIX):
        return None
    key = (
        ProviderKey.objects.filter(digest=secret_digest(raw_token), revoked_at__isnull=True)
        .only("pk", "provider_id")
        .first()
    )
    if key is None:
        return None
    ProviderKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return RegistrationGrant(
        provider_id=key.provider_id,
        credential=Credential.PROVIDER_KEY,
        credential_prefix=credential_prefix(raw_token),
    )
