"""The deployment state machine (DESIGN.md §4): `deployment_transition` checks and records each
move; a live deployment's status is derived from its replicas (`deployment_refresh_status`);
`replica_fail` ends a replica. Provisioning replicas is `provisioning`, following their pods
`pod_sync`, probing their health path `health`. Every function is safe to run twice at once
and safe to kill halfway: rows are re-read under their lock (apps.catalog.locks)."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from apps.catalog.locks import lock_deployment, lock_replica
from apps.catalog.models import (
    DEPLOYMENT_FINAL,
    REPLICA_LIVE,
    REPLICA_SERVING,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    Replica,
    ReplicaStatus,
)

D = DeploymentStatus

R = ReplicaStatus


class IllegalDeploymentTransitionError(Exception):
    pass


def deployment_transition(
    *, deployment: Deployment, to: str, reason: str, extra_fields: tuple[str, ...] = ()
) -> None:
    """Move `deployment` to `to` (the caller holds its row lock) and record the event. STOPPED
    is final; FAILED may only become STOPPED (its owner deletes it)."""
    if deployment.status == to and deployment.status_reason == reason[:500]:
        return
    current = deployment.status
    if current == D.STOPPED or (current == D.FAILED and to != D.STOPPED):
        raise IllegalDeploymentTransitionError(
            f"deployment {deployment.pk}: {current} → {to} is not allowed"
        )
    if current != to:
        DeploymentEvent.objects.create(
            deployment=deployment, from_status=current, to_status=to, reason=reason[:500]
        )
    deployment.status = to
    deployment.status_reason = reason[:500]
    fields = ["status", "status_reason", "updated_at", *extra_fields]
    if to == D.READY and deployment.ready_at is None:
        deployment.ready_at = timezone.now()
        fields.append("ready_at")
    if to in DEPLOYMENT_FINAL and deployment.stopped_at is None:
        deployment.stopped_at = timezone.now()
        fields.append("stopped_at")
    deployment.save(update_fields=fields)


def derived_status(*, deployment: Deployment, replicas: list[Replica]) -> tuple[str, str]:
    """The status a live deployment's replicas add up to, and why."""
    live = [r for r in replicas if r.status in REPLICA_SERVING]
    ready = sum(r.status == R.READY for r in live)
    wanted = deployment.replicas
    if wanted == 0 and not live:
        return D.IDLE, "scaled to zero: the next request starts a replica and waits for it"
    if ready and ready >= wanted:
        return D.READY, f"{ready} of {wanted} replicas ready"
    was_serving = deployment.ready_at is not None
    if ready or (was_serving and live):
        return D.DEGRADED, f"{ready} of {wanted} replicas ready"
    if any(r.status in (R.LOADING, R.UNHEALTHY) for r in live):
        return D.LOADING, "model loading: waiting for the health check to pass"
    if live:
        reasons = {r.status_reason for r in live if r.status_reason}
        return D.PROVISIONING, "; ".join(sorted(reasons))[:500] or "waiting for capacity"
    return D.PENDING, deployment.status_reason or "no replica yet"


def deployment_refresh_status(*, deployment_id: uuid.UUID | str) -> Deployment | None:
    """Recompute a live deployment's status from its replicas."""
    with transaction.atomic():
        deployment = lock_deployment(deployment_id)
        if deployment is None or deployment.status in DEPLOYMENT_FINAL:
            return deployment
        replicas = list(deployment.replica_set.all())
        status, reason = derived_status(deployment=deployment, replicas=replicas)
        if (status, reason) != (deployment.status, deployment.status_reason):
            deployment_transition(deployment=deployment, to=status, reason=reason)
        return deployment


def replica_fail(*, replica_id: int, reason: str, count_failure: bool = True) -> None:
    """A replica that will not serve again: FAILED (or deleted when it never got a pod and the
    failure is not its own, so it does not use up the deployment's failure budget)."""
    with transaction.atomic():
        replica = lock_replica(replica_id)
        if replica is None or replica.status not in REPLICA_LIVE:
            return
        if not count_failure and replica.pod_id is None:
            replica.delete()
            return
        replica.status = R.FAILED
        replica.status_reason = reason[:500]
        replica.base_url = ""
        replica.host_port = None
        replica.save(
            update_fields=["status", "status_reason", "base_url", "host_port", "updated_at"]
        )
