"""A deployment's replicas as pods. Provisioning: one pod per missing replica, on a free host
port, within the deployment's failure budget (a broken image must not start pods forever).
Following: a pod that runs makes its replica LOADING (the health check makes it READY), a pod
that ends ends its replica and asks for a replacement at once; driven by the nodes' signals
(apps.catalog.receivers) and a periodic catch-up. The two call each other, so they share this
module. Safe to run twice at once: the deployment's lock serialises each pass."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.catalog.locks import lock_deployment, lock_replica
from apps.catalog.models import (
    DEPLOYMENT_FINAL,
    REPLICA_LIVE,
    REPLICA_SERVING,
    Deployment,
    Replica,
)
from apps.catalog.services.lifecycle import (
    D,
    R,
    deployment_refresh_status,
    deployment_transition,
    replica_fail,
)
from apps.pods import services as pod_services
from apps.pods.models import Pod, PodStatus

FAILURES_PER_REPLICA = 3

MIN_FAILURE_BUDGET = 3

POD_WAITING = (PodStatus.PENDING, PodStatus.PROVISIONING, PodStatus.SCHEDULED, PodStatus.STARTING)

POD_ENDED = (PodStatus.STOPPING, PodStatus.STOPPED, PodStatus.FAILED, PodStatus.TERMINATED)
# A deployment whose replicas keep failing stops being retried after this many failures per
# wanted replica (at least MIN_FAILURE_BUDGET): a broken image must not start pods forever.


def _fill(value: Any, *, port: int, deployment: Deployment) -> Any:
    if isinstance(value, str):
        return value.replace("{port}", str(port)).replace("{model_name}", deployment.model_name)
    return value


def replica_pod_spec(*, deployment: Deployment, port: int, index: int) -> dict[str, Any]:
    """The pod that serves one replica: the deployment's image, args and env, its port."""
    return {
        "name": f"{deployment.name}-{index}"[:100],
        "image": deployment.image,
        "command": [_fill(a, port=port, deployment=deployment) for a in deployment.args] or None,
        "env": {
            k: str(_fill(v, port=port, deployment=deployment)) for k, v in deployment.env.items()
        },
        "ports": [{"container_port": port, "protocol": "tcp", "host_port": None}],
        "gpu_model": deployment.gpu_model,
        "gpu_count": deployment.gpu_count,
        "min_vram_mb": deployment.min_vram_mb,
        "price_cap_per_gpu_hour": deployment.price_cap_per_gpu_hour,
        "restartable": True,
    }


def _free_host_port() -> int | None:
    low, high = settings.CATALOG_HOST_PORT_RANGE
    used = set(Replica.objects.filter(host_port__isnull=False).values_list("host_port", flat=True))
    for port in range(low, high + 1):
        if port not in used:
            return port
    return None


def _new_replica(deployment: Deployment) -> Replica | None:
    """A PENDING replica row; host-network ones claim a host port (the unique column settles
    races between provisioners)."""
    for _ in range(5):
        port = deployment.port
        host_port = None
        if deployment.host_network:
            host_port = _free_host_port()
            if host_port is None:
                return None
            port = host_port
        try:
            with transaction.atomic():
                return Replica.objects.create(
                    deployment=deployment, port=port, host_port=host_port, status=R.PENDING
                )
        except IntegrityError:
            continue  # another provisioner took that port: pick again
    return None


@dataclass
class ProvisionResult:
    replicas_created: int = 0
    deployments_failed: int = 0


def deployment_provision(*, deployment_id: uuid.UUID | str) -> int:
    """Create the replicas (and their pods) a live deployment lacks; the number created.
    Pods are placed at once when capacity allows, or wait PENDING for the scheduler."""
    created = 0
    with transaction.atomic():
        deployment = lock_deployment(deployment_id)
        if deployment is None or deployment.status in DEPLOYMENT_FINAL:
            return 0
        replicas = list(deployment.replica_set.all())
        failed = [r for r in replicas if r.status == R.FAILED]
        budget = max(MIN_FAILURE_BUDGET, FAILURES_PER_REPLICA * deployment.replicas)
        live = [r for r in replicas if r.status in REPLICA_SERVING]
        if len(failed) >= budget and not any(r.status == R.READY for r in live):
            last = failed[-1].status_reason or "replicas keep failing"
            deployment_transition(
                deployment=deployment,
                to=D.FAILED,
                reason=f"{len(failed)} replicas failed; last: {last}",
            )
            transaction.on_commit(lambda: _stop_pods(deployment_id=deployment.pk))
            return 0
        missing = deployment.replicas - len(live)
        new: list[Replica] = []
        for _ in range(max(0, missing)):
            replica = _new_replica(deployment)
            if replica is None:
                deployment.status_reason = "no free host port for another replica"
                deployment.save(update_fields=["status_reason", "updated_at"])
                break
            new.append(replica)
        if new and deployment.status == D.PENDING:
            deployment_transition(
                deployment=deployment, to=D.PROVISIONING, reason="creating replicas"
            )
    owner = deployment.owner
    for replica in new:
        index = replica.pk
        spec = replica_pod_spec(deployment=deployment, port=replica.port, index=index)
        try:
            made = pod_services.pod_create(owner=owner, spec=spec)
        except pod_services.SpendRefusedError as exc:
            replica_fail(replica_id=replica.pk, reason=f"refused: {exc}", count_failure=False)
            with transaction.atomic():
                locked = lock_deployment(deployment.pk)
                if locked is not None and locked.status not in DEPLOYMENT_FINAL:
                    deployment_transition(
                        deployment=locked, to=locked.status, reason=f"refused: {exc}"
                    )
            break
        Replica.objects.filter(pk=replica.pk).update(pod=made.pod, updated_at=timezone.now())
        created += 1
        replica_sync_pod(pod_id=made.pod.pk)
    if created:
        deployment_refresh_status(deployment_id=deployment.pk)
    return created


def deployments_provision_pending() -> ProvisionResult:
    """Periodic: every live deployment with fewer live replicas than it wants gets them."""
    result = ProvisionResult()
    ids = list(
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL)
        .annotate(live=Count("replica_set", filter=Q(replica_set__status__in=REPLICA_SERVING)))
        .filter(live__lt=F("replicas"))
        .values_list("pk", flat=True)
    )
    for deployment_id in ids:
        result.replicas_created += deployment_provision(deployment_id=deployment_id)
    return result


def _stop_pods(*, deployment_id: uuid.UUID) -> None:
    for pod in Pod.objects.filter(replica__deployment_id=deployment_id).exclude(
        status__in=(PodStatus.STOPPED, PodStatus.FAILED, PodStatus.TERMINATED)
    ):
        pod_services.pod_stop(pod=pod, reason="deployment stopped")


def endpoint_url(pod: Pod, port: int) -> str:
    """`http://host:port` of the pod's container port, from the endpoints its node reported."""
    endpoint = (pod.endpoints or {}).get(f"{port}/tcp")
    return f"http://{endpoint}" if endpoint else ""


def replica_sync_pod(*, pod_id: uuid.UUID | str) -> None:
    """Move the replica of pod `pod_id` after its pod: a running container starts LOADING (the
    health check makes it READY), a rescheduled pod waits again, an ended pod fails the
    replica (the provisioner replaces it)."""
    replica_row = Replica.objects.filter(pod_id=pod_id).values("id", "deployment_id").first()
    if replica_row is None:
        return
    with transaction.atomic():
        deployment = lock_deployment(replica_row["deployment_id"])
        replica = lock_replica(replica_row["id"])
        if deployment is None or replica is None or replica.status not in REPLICA_LIVE:
            return
        pod = replica.pod
        assert pod is not None  # noqa: S101 - selected by its pod
        fields: set[str] = set()
        if pod.status == PodStatus.RUNNING:
            url = endpoint_url(pod, replica.port)
            if url != replica.base_url:
                replica.base_url = url
                fields.add("base_url")
            if replica.status == R.PENDING and url:
                replica.status = R.LOADING
                replica.status_reason = f"container running; waiting for {deployment.health_path}"
                fields |= {"status", "status_reason"}
        elif pod.status in POD_WAITING and replica.status != R.DRAINING:
            reason = pod.status_reason or pod.status.lower()
            if replica.status != R.PENDING or replica.status_reason != reason[:500]:
                replica.status = R.PENDING
                replica.status_reason = reason[:500]
                replica.base_url = ""
                fields |= {"status", "status_reason", "base_url"}
        elif pod.status in POD_ENDED:
            # A drained replica's pod stops because we stopped it: not a failure.
            stopping = deployment.status in DEPLOYMENT_FINAL or replica.status == R.DRAINING
            replica.status = R.STOPPED if stopping else R.FAILED
            replica.status_reason = f"pod {pod.status.lower()}: {pod.status_reason}"[:500]
            replica.base_url = ""
            replica.host_port = None
            fields |= {"status", "status_reason", "base_url", "host_port"}
        if fields:
            replica.save(update_fields=[*fields, "updated_at"])
    deployment_refresh_status(deployment_id=replica_row["deployment_id"])
    if pod.status in POD_ENDED and deployment.status not in DEPLOYMENT_FINAL:
        if pod.status in (PodStatus.FAILED, PodStatus.STOPPED):
            # The pod is done; its replacement is the provisioner's job (now, not in 30 s).
            transaction.on_commit(lambda: deployment_provision(deployment_id=deployment.pk))


def deployments_sync_status() -> int:
    """Periodic: catch up replicas whose pod moved without the signal reaching us (a replica
    waiting while its pod runs, or serving while its pod does not), then recompute every live
    deployment's status. The number of deployments looked at."""
    running = PodStatus.RUNNING
    out_of_step = Replica.objects.filter(pod__isnull=False).filter(
        Q(status=R.PENDING, pod__status=running)
        | Q(status__in=(R.LOADING, R.READY, R.UNHEALTHY, R.DRAINING)) & ~Q(pod__status=running)
    )
    for pod_id in out_of_step.values_list("pod_id", flat=True):
        replica_sync_pod(pod_id=pod_id)
    ids = list(Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL).values_list("pk", flat=True))
    for deployment_id in ids:
        deployment_refresh_status(deployment_id=deployment_id)
    return len(ids)
