"""A deployment's scaling settings (issue 14), changeable at any time: replica bounds, the
concurrency each replica should carry, how long the load must want fewer replicas before one
goes, and how many requests may wait (and for how long) while no replica is ready."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.catalog.locks import lock_deployment
from apps.catalog.models import DEPLOYMENT_FINAL, Deployment, DeploymentEvent
from apps.catalog.services import autoscale

# Upper bounds a user may set (the scheduler and the host-port range bound what is real).
MAX_REPLICAS = 16
MAX_TARGET_CONCURRENCY = 10_000
MAX_SCALE_DOWN_DELAY_S = 86_400
MAX_QUEUE = 10_000
MAX_QUEUE_TIMEOUT_S = 900

SCALING_FIELDS = (
    "min_replicas",
    "max_replicas",
    "target_concurrency",
    "scale_down_delay_s",
    "max_queue",
    "queue_timeout_s",
)


class ScalingSettingsError(ValueError):
    """A setting out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class DeploymentNotLiveError(Exception):
    pass


@dataclass(frozen=True)
class ScalingSettings:
    min_replicas: int
    max_replicas: int
    target_concurrency: int
    scale_down_delay_s: int
    max_queue: int
    queue_timeout_s: int

    @classmethod
    def of(cls, deployment: Deployment) -> ScalingSettings:
        return cls(**{name: getattr(deployment, name) for name in SCALING_FIELDS})


# The model's defaults: a fixed single replica; 8 requests per replica; 5 minutes before a
# replica goes; up to 100 requests wait up to 60 s for a replica.
DEFAULT_SCALING = ScalingSettings(
    min_replicas=1,
    max_replicas=1,
    target_concurrency=8,
    scale_down_delay_s=300,
    max_queue=100,
    queue_timeout_s=60,
)

_BOUNDS: dict[str, tuple[int, int]] = {
    "min_replicas": (0, MAX_REPLICAS),
    "max_replicas": (1, MAX_REPLICAS),
    "target_concurrency": (1, MAX_TARGET_CONCURRENCY),
    "scale_down_delay_s": (0, MAX_SCALE_DOWN_DELAY_S),
    "max_queue": (0, MAX_QUEUE),
    "queue_timeout_s": (1, MAX_QUEUE_TIMEOUT_S),
}


def scaling_validate(*, current: ScalingSettings, changes: dict[str, Any]) -> ScalingSettings:
    """The settings after `changes`, or ScalingSettingsError naming the first bad field."""
    for name, value in changes.items():
        if name not in _BOUNDS:
            raise ScalingSettingsError(name, f"Unknown scaling setting {name!r}.")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScalingSettingsError(name, "A whole number is required.")
        low, high = _BOUNDS[name]
        if not low <= value <= high:
            raise ScalingSettingsError(name, f"Must be between {low} and {high}.")
    merged = ScalingSettings(**{**current.__dict__, **changes})
    if merged.max_replicas < 1:
        raise ScalingSettingsError("max_replicas", f"Must be between 1 and {MAX_REPLICAS}.")
    if merged.min_replicas > merged.max_replicas:
        field = "min_replicas" if "min_replicas" in changes else "max_replicas"
        raise ScalingSettingsError(
            field,
            f"min_replicas ({merged.min_replicas}) must not exceed max_replicas "
            f"({merged.max_replicas}).",
        )
    return merged


def deployment_scaling_update(
    *, deployment_id: uuid.UUID | str, changes: dict[str, Any], actor: str = "its owner"
) -> Deployment:
    """Change a live deployment's scaling settings. The wanted replica count is brought into
    the new bounds at once (more replicas are provisioned, extra ones drained) by the
    autoscaler, which runs right after; the change is a deployment event."""
    with transaction.atomic():
        deployment = lock_deployment(deployment_id)
        if deployment is None:
            raise Deployment.DoesNotExist(str(deployment_id))
        if deployment.status in DEPLOYMENT_FINAL:
            raise DeploymentNotLiveError(f"The deployment is {deployment.status}.")
        current = ScalingSettings.of(deployment)
        merged = scaling_validate(current=current, changes=changes)
        changed = [n for n in SCALING_FIELDS if getattr(current, n) != getattr(merged, n)]
        if not changed:
            return deployment
        for name in changed:
            setattr(deployment, name, getattr(merged, name))
        deployment.save(update_fields=[*changed, "updated_at"])
        described = ", ".join(f"{n} {getattr(current, n)}→{getattr(merged, n)}" for n in changed)
        DeploymentEvent.objects.create(
            deployment=deployment,
            from_status=deployment.status,
            to_status=deployment.status,
            reason=f"scaling settings changed by {actor}: {described}"[:500],
        )
    autoscale.deployment_autoscale(deployment_id=deployment.pk, bounds_only=True)
    deployment.refresh_from_db()
    return deployment
