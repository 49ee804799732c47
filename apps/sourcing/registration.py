"""Agents on rented machines register with a per-instance token (`sit_…`, stored hashed on
the ProvisionedInstance), never with the platform's bootstrap token: a leaked startup
script opens one machine's registration, nothing else. The grant binds the node to the
instance's upstream id."""

from apps.core.secrets import secret_digest
from apps.nodes.registration import RegistrationGrant
from apps.sourcing.models import LIVE_STATUSES, ProvisionedInstance

INSTANCE_TOKEN_PREFIX = "sit_"  # noqa: S105 - a prefix, not a secret


def instance_token_grant(raw_token: str) -> RegistrationGrant | None:
    if not raw_token.startswith(INSTANCE_TOKEN_PREFIX):
        return None
    instance = (
        ProvisionedInstance.objects.filter(
            token_digest=secret_digest(raw_token), status__in=LIVE_STATUSES
        )
        .only("provider_instance_id")
        .first()
    )
    if instance is None:
        return None
    return RegistrationGrant(provider_id=None, provider_instance_id=instance.provider_instance_id)
