"""The autoscaler (issue 14): replicas follow the load.

Load is what every web process has outstanding for the deployment — requests in flight on its
serving replicas plus requests held waiting for a replica (`apps.catalog.load`). The wanted
number of replicas is `ceil(load / target_concurrency)` within `[min_replicas, max_replicas]`
(at least one while anything waits). Up: at once. Down: only once the load has wanted fewer
replicas for `scale_down_delay_s` without a break; the replicas that go are the least loaded
(ones that never served first). They are DRAINING: the proxy routes nothing new to them, and
each is stopped only when no process has a request in flight on it and it has been draining
for longer than a proxy can keep routing on a cached view (DRAIN_GRACE_S), so no request or
stream is cut. Every decision and its reason is a deployment event.

Runs from beat every few seconds (`catalog.autoscale`) and from the proxy the moment it holds a
request for a deployment with no ready replica (`deployment_wake`). Safe to run twice at once:
each deployment is decided under its row lock."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.catalog.load import LoadSnapshot, load_snapshot
from apps.catalog.locks import lock_deployment, lock_replica
from apps.catalog.models import (
    DEPLOYMENT_FINAL,
    REPLICA_SERVING,
    Deployment,
    DeploymentEvent,
    Replica,
    ReplicaStatus,
)
from apps.catalog.services import health, lifecycle, provisioning
from apps.pods import services as pod_services
from apps.pods.models import Pod

logger = logging.getLogger(__name__)
R = ReplicaStatus


def drain_grace_s() -> float:
    """How long a draining replica must wait before it can be stopped, even at zero load: a web
    process may route to it on its cached view of the READY replicas for PROXY_ROUTE_CACHE_S
    plus at most PROXY_ROUTE_MAX_STALE_S (then one read), and publishes a new request's count
    within PROXY_LOAD_SYNC_S."""
    return (
        float(settings.PROXY_ROUTE_CACHE_S)
        + float(settings.PROXY_ROUTE_MAX_STALE_S)
        + float(settings.PROXY_LOAD_SYNC_S) * 2
        + 1
    )


def _event(deployment: Deployment, reason: str) -> None:
    DeploymentEvent.objects.create(
        deployment=deployment,
        from_status=deployment.status,
        to_status=deployment.status,
        reason=reason[:500],
    )


@dataclass(frozen=True)
class Decision:
    before: int
    after: int
    reason: str


def wanted_replicas(*, deployment: Deployment, load: int) -> int:
    """The replicas `load` outstanding requests need, within the deployment's bounds."""
    needed = math.ceil(load / max(1, deployment.target_concurrency))
    if load > 0:
        needed = max(needed, 1)
    return max(deployment.min_replicas, min(deployment.max_replicas, needed))


def _removal_order(replicas: list[Replica], snapshot: LoadSnapshot) -> list[Replica]:
    """Replicas to take away first: ones that never served (no request can be on them), then
    the least loaded, newest first among equals."""
    return sorted(
        replicas,
        key=lambda r: (r.status == R.READY, snapshot.replica(r.pk), -r.pk),
    )


def deployment_autoscale(
    *,
    deployment_id: uuid.UUID | str,
    snapshot: LoadSnapshot | None = None,
    bounds_only: bool = False,
    waiting: int = 0,
    now: datetime | None = None,
) -> Decision | None:
    """Decide the wanted replica count of one live deployment from its load, and act: more
    replicas are provisioned, extra ones drained. `bounds_only`: only bring the count within
    [min, max] (after a settings change), whatever the load. `waiting`: requests the caller
    knows are held, should the published load not show them yet. The decision, or None."""
    now = now or timezone.now()
    snapshot = snapshot if snapshot is not None else load_snapshot()
    decision: Decision | None = None
    with transaction.atomic():
        deployment = lock_deployment(deployment_id)
        if deployment is None or deployment.status in DEPLOYMENT_FINAL:
            return None
        serving = [r for r in deployment.replica_set.all() if r.status in REPLICA_SERVING]
        in_flight = sum(snapshot.replica(r.pk) for r in serving)
        held = max(snapshot.held_for(deployment.pk), waiting)
        load = in_flight + held
        current = deployment.replicas
        ready = sum(r.status == R.READY for r in serving)
        if bounds_only:
            wanted = max(deployment.min_replicas, min(deployment.max_replicas, current))
        else:
            wanted = wanted_replicas(deployment=deployment, load=load)
        target = deployment.target_concurrency
        why_load = (
            f"{load} outstanding ({in_flight} in flight, {held} waiting) over {ready} ready "
            f"replica{'s' if ready != 1 else ''}, target {target} per replica"
        )
        fields: list[str] = []
        if wanted > current:
            reason = f"scale up {current} → {wanted}: " + (
                why_load if not bounds_only else f"min_replicas is {deployment.min_replicas}"
            )
            deployment.replicas = wanted
            deployment.scale_down_since = None
            fields += ["replicas", "scale_down_since"]
            _event(deployment, reason)
            decision = Decision(current, wanted, reason)
        elif wanted < current:
            delay = timedelta(seconds=deployment.scale_down_delay_s)
            over_max = current > deployment.max_replicas
            if deployment.scale_down_since is None and not over_max:
                deployment.scale_down_since = now
                fields.append("scale_down_since")
            elif over_max or now - deployment.scale_down_since >= delay:  # type: ignore[operator]
                going = _removal_order(serving, snapshot)[: max(0, len(serving) - wanted)]
                for replica in going:
                    replica.status = R.DRAINING
                    replica.status_reason = "draining: the autoscaler removes it"
                    replica.draining_at = now
                    replica.save(update_fields=["status", "status_reason", "draining_at"])
                if over_max:
                    why = f"max_replicas is {deployment.max_replicas}"
                else:
                    why = f"{why_load}, for {deployment.scale_down_delay_s} s"
                names = ", ".join(str(r.pk) for r in going) or "none"
                reason = f"scale down {current} → {wanted}: {why}; draining replicas {names}"
                deployment.replicas = wanted
                deployment.scale_down_since = None
                fields += ["replicas", "scale_down_since"]
                _event(deployment, reason)
                decision = Decision(current, wanted, reason)
        elif deployment.scale_down_since is not None:
            deployment.scale_down_since = None  # the load came back before the delay ran out
            fields.append("scale_down_since")
        if fields:
            deployment.save(update_fields=[*fields, "updated_at"])
    if decision is not None:
        if decision.after > decision.before:
            provisioning.deployment_provision(deployment_id=deployment.pk)
        lifecycle.deployment_refresh_status(deployment_id=deployment.pk)
    return decision


def replicas_finish_draining(
    *, snapshot: LoadSnapshot | None = None, now: datetime | None = None
) -> int:
    """Stop the DRAINING replicas nobody has a request on any more (after DRAIN_GRACE_S; at
    once for one that never served). The number stopped."""
    now = now or timezone.now()
    snapshot = snapshot if snapshot is not None else load_snapshot()
    grace = timedelta(seconds=drain_grace_s())
    stopped = 0
    candidates = Replica.objects.filter(status=R.DRAINING).values_list("pk", flat=True)
    for replica_id in list(candidates):
        if snapshot.replica(replica_id) > 0:
            continue
        pod: Pod | None = None
        with transaction.atomic():
            replica = lock_replica(replica_id, status=R.DRAINING)
            if replica is None:
                continue
            served = replica.ready_at is not None
            if served and replica.draining_at and now - replica.draining_at < grace:
                continue
            replica.status = R.STOPPED
            replica.status_reason = "drained: no request in flight; stopped by the autoscaler"
            replica.base_url = ""
            replica.host_port = None
            replica.save(
                update_fields=["status", "status_reason", "base_url", "host_port", "updated_at"]
            )
            _event(replica.deployment, f"replica {replica.pk} drained and stopped")
            pod = replica.pod
            deployment_id = replica.deployment_id
        if pod is not None:
            pod_services.pod_stop(pod=pod, reason="replica drained by the autoscaler")
        # Its host port is free again: a deployment that wanted a replica it had no port for
        # (scaled down, then up again while this one drained) gets it now, not at the next
        # periodic provisioning pass.
        provisioning.deployment_provision(deployment_id=deployment_id)
        lifecycle.deployment_refresh_status(deployment_id=deployment_id)
        stopped += 1
    return stopped


@dataclass
class AutoscaleResult:
    decisions: int = 0
    drained: int = 0


def deployments_autoscale() -> AutoscaleResult:
    """Periodic: one load reading, then every live deployment decided, drained replicas
    stopped, and LOADING replicas probed so that a new one serves as soon as it answers."""
    snapshot = load_snapshot()
    now = timezone.now()
    result = AutoscaleResult()
    ids = list(Deployment.objects.live().values_list("pk", flat=True))
    for deployment_id in ids:
        if deployment_autoscale(deployment_id=deployment_id, snapshot=snapshot, now=now):
            result.decisions += 1
    result.drained = replicas_finish_draining(snapshot=snapshot, now=now)
    if Replica.objects.filter(status=R.LOADING, base_url__gt="").exists():
        health.replicas_health_check(loading_only=True)
    return result


def deployment_wake(*, deployment_id: uuid.UUID | str) -> None:
    """A request is waiting for this deployment: decide now (a scale-up from zero starts a
    replica at once) and probe its LOADING replicas so that one serves the moment it answers.
    Called by the proxy while it holds requests."""
    deployment_autoscale(deployment_id=deployment_id, waiting=1)
    loading = Replica.objects.filter(
        deployment_id=deployment_id, status=R.LOADING, base_url__gt=""
    ).exists()
    if loading:
        health.replicas_health_check(loading_only=True)
