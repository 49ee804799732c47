"""Row locks of the catalog, in one order: a deployment before its replicas (the provisioner,
the pod sync, the health check and the autoscaler all lock in this order, so they never
deadlock on each other), replicas before their pods (apps.pods.locks); deployment keys on
their own."""

import uuid

from apps.catalog.models import Deployment, DeploymentKey, ModelTemplate, Replica


def lock_deployment(deployment_id: uuid.UUID | str) -> Deployment | None:
    # Serialises a deployment's status and scaling changes: an owner's stop, a bounds change
    # and the autoscaler's decision must not each act on the same stale replica count.
    return Deployment.objects.select_for_update().filter(pk=deployment_id).first()


def lock_replica(replica_id: int, *, status: str | None = None) -> Replica | None:
    # Serialises a replica's moves (pod sync, health probe, drain, failure): one replica must
    # not be both failed and marked ready from the same stale read. Only the replica row is
    # locked; its deployment and pod come along unlocked for reading.
    rows = (
        Replica.objects.select_for_update(of=("self",))
        .select_related("deployment", "pod")
        .filter(pk=replica_id)
    )
    if status is not None:
        rows = rows.filter(status=status)
    return rows.first()


def lock_deployment_key(key_id: uuid.UUID | str) -> DeploymentKey:
    # Two changes of one key's budget or revocation must not overwrite each other.
    return DeploymentKey.objects.select_for_update().get(pk=key_id)


def lock_templates() -> dict[str, ModelTemplate]:
    # Serialises seeding the template list: two seeders must not both create one slug.
    return {t.slug: t for t in ModelTemplate.objects.select_for_update()}
