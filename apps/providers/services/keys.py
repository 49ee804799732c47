"""Provider keys (`pk_…`): issued shown-once, stored hashed, several per provider, revocable."""

from dataclasses import dataclass

from django.utils import timezone

from apps.core.secrets import secret_issue
from apps.providers.models import Provider, ProviderKey

PROVIDER_KEY_PREFIX = "pk_"


@dataclass(frozen=True)
class IssuedProviderKey:
    key: ProviderKey
    raw: str  # shown to the provider once, never stored


def provider_key_create(*, provider: Provider, name: str) -> IssuedProviderKey:
    """A new key for `provider`; the raw key exists only in the return value."""
    issued = secret_issue(prefix=PROVIDER_KEY_PREFIX)
    key = ProviderKey.objects.create(
        provider=provider, name=name, prefix=issued.display_prefix, digest=issued.digest
    )
    return IssuedProviderKey(key=key, raw=issued.raw)


def provider_key_revoke(*, key: ProviderKey) -> ProviderKey:
    """Revoke `key` (idempotent): it registers no more nodes. Nodes it registered keep their
    own node tokens; an operator retires a node that must go."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ProviderKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=key.revoked_at
        )
    return key
