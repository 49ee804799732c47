"""Who may register a node: the platform's bootstrap token (a platform node), or a credential
that one of NODE_REGISTRATION_RESOLVERS accepts (the providers app adds one for `pk_…` keys,
returning the provider the node then belongs to).

The bootstrap token and the sourcing app's per-instance tokens are limited: at most
NODE_REGISTRATION_TOKEN_MAX_USES registrations (default 1) and only within
NODE_REGISTRATION_TOKEN_TTL_S (default 1 h) of their issue, or of their first use when the
issue time is unknown (the bootstrap token comes from the environment). `pk_…` keys are
reusable by design; every registration is recorded (`NodeRegistration`) for the provider."""

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from apps.core.secrets import secret_digest
from apps.nodes.models import Credential

CREDENTIAL_PREFIX_CHARS = 8


@dataclass(frozen=True)
class RegistrationGrant:
    provider_id: uuid.UUID | None  # None: a platform node
    # Set when the credential is bound to one upstream instance (the sourcing app's
    # per-instance tokens): the node is that instance, whatever the agent says.
    provider_instance_id: str = ""
    credential: str = Credential.INTERNAL
    credential_prefix: str = ""  # enough of the token to tell it apart in logs and lists
    # Set for limited tokens: their uses are counted under this digest.
    limited_digest: str = ""
    issued_at: datetime | None = None  # None: the limit's clock starts at the first use


def credential_prefix(raw_token: str) -> str:
    """The start of a token, for logs and lists: 8 characters, fewer for a short token (a
    quarter of it at most), so what is shown never gives much of the secret away."""
    return raw_token[: min(CREDENTIAL_PREFIX_CHARS, len(raw_token) // 4)]


Resolver = Callable[[str], RegistrationGrant | None]


@cache
def _resolvers(paths: tuple[str, ...]) -> tuple[Resolver, ...]:
    return tuple(import_string(path) for path in paths)


def registration_grant(raw_token: str) -> RegistrationGrant | None:
    bootstrap = settings.NODE_BOOTSTRAP_TOKEN
    if bootstrap and hmac.compare_digest(raw_token.encode(), bootstrap.encode()):
        return RegistrationGrant(
            provider_id=None,
            credential=Credential.BOOTSTRAP,
            credential_prefix=credential_prefix(raw_token),
            limited_digest=secret_digest(raw_token),
        )
    for resolver in _resolvers(tuple(settings.NODE_REGISTRATION_RESOLVERS)):
        grant = resolver(raw_token)
        if grant is not None:
            return grant
    return None
