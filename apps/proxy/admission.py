"""What a `/v1` request goes through besides routing (issue 14), in one place for the views:
before — the key's own limits (monthly token budget, rate), then the deployment's route, held
for a replica when none is READY; after — the key's tokens metered and a held request's cold
start recorded as its answer's first byte goes out."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from apps.proxy.hold import Held, holder, timed_response
from apps.proxy.keys import guard
from apps.proxy.routing import DeploymentRoute, KeyIdentity


@dataclass(frozen=True)
class Admission:
    identity: KeyIdentity
    held: Held | None


async def admit(
    request: HttpRequest, identity: KeyIdentity, *, capability: str, model: str | None
) -> DeploymentRoute:
    """The route for this request (held until a replica is READY), after the key's limits."""
    await guard.check(identity)
    route, held = await holder.resolve(identity, capability=capability, model=model)
    request.gco_admission = Admission(identity=identity, held=held)  # type: ignore[attr-defined]
    return route


def finish(
    request: HttpRequest, response: HttpResponse | StreamingHttpResponse, *, endpoint: str
) -> HttpResponse | StreamingHttpResponse:
    admission: Admission | None = getattr(request, "gco_admission", None)
    if admission is None:
        return response
    response = guard.metered(admission.identity, response)
    return timed_response(admission.held, response, endpoint=endpoint)
