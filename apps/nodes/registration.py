"""Who may register a node: the platform's bootstrap token (a platform node), or a credential
that one of NODE_REGISTRATION_RESOLVERS accepts (the providers app adds one for `pk_…` keys,
returning the provider the node then belongs to)."""

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class RegistrationGrant:
    provider_id: uuid.UUID | None  # None: a platform node
    # Set when the credential is bound to one upstream instance (the sourcing app's
    # per-instance tokens): the node is that instance, whatever the agent says.
    provider_instance_id: str = ""


Resolver = Callable[[str], RegistrationGrant | None]


@cache
def _resolvers(paths: tuple[str, ...]) -> tuple[Resolver, ...]:
    return tuple(import_string(path) for path in paths)


def registration_grant(raw_token: str) -> RegistrationGrant | None:
    bootstrap = settings.NODE_BOOTSTRAP_TOKEN
    if bootstrap and hmac.compare_digest(raw_token.encode(), bootstrap.encode()):
        return RegistrationGrant(provider_id=None)
    for resolver in _resolvers(tuple(settings.NODE_REGISTRATION_RESOLVERS)):
        grant = resolver(raw_token)
        if grant is not None:
            return grant
    return None
