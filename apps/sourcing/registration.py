"""Agents on rented machines register with a per-instance token (`sit_…`, stored hashed on
the ProvisionedInstance), never with the platform's bootstrap token: a leaked startup
script opens one machine's registration, nothing else. The grant binds the node to the
instance's upstream id, and the token is limited like the bootstrap token: single-use (by
default) and valid for NODE_REGISTRATION_TOKEN_TTL_S from the instance's creation."""

from apps.core.secrets import secret_digest
from apps.nodes.models import Credential
from apps.nodes.registration import RegistrationGrant, credential_prefix
from apps.sourcing.models import LIVE_STATUSES, ProvisionedInstance

INSTANCE_TOKEN_PREFIX = "sit_"  # noqa: S105 - a prefix, not a secret


def instance_token_grant(raw_token: str) -> RegistrationGrant | None:
    if not raw_token.startswith(INSTANCE_TOKEN_PREFIX):
        return None
    digest = secret_digest(raw_token)
    instance = (
        ProvisionedInstance.objects.filter(token_digest=digest, status__in=LIVE_STATUSES)
        .only("provider_instance_id", "created_at")
        .first()
    )
    if instance is None:
        return None
    return RegistrationGrant(
        provider_id=None,
        provider_instance_id=instance.provider_instance_id,
        credential=Credential.INSTANCE,
        credential_prefix=credential_prefix(raw_token),
        limited_digest=digest,
        issued_at=instance.created_at,
    )
