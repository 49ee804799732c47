"""What a `/v1` request goes through before it is forwarded, besides routing (issue 14): the
key's own limits (monthly token budget, rate), then the deployment's route, held for a replica
when none is READY, then the deployment's per-minute limit. What comes after (the key's tokens
metered, a held request's cold start recorded) is in `forward`."""

from __future__ import annotations

from dataclasses import dataclass

from apps.proxy.hold import Held, holder
from apps.proxy.keys import guard
from apps.proxy.routing import DeploymentRoute, KeyIdentity, router


@dataclass(frozen=True)
class Admission:
    identity: KeyIdentity
    held: Held | None


async def admit(
    identity: KeyIdentity, *, capability: str, model: str | None
) -> tuple[DeploymentRoute, Admission]:
    """The route for this request (held until a replica is READY), after the key's limits;
    ProxyError when it is refused."""
    await guard.check(identity)
    route, held = await holder.resolve(identity, capability=capability, model=model)
    await router.check_rate(route)
    return route, Admission(identity=identity, held=held)
