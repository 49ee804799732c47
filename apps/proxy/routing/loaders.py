"""What routing hands out (a key's identity, a deployment's route, its READY replicas) and the
database reads that make them (sync: run them through `cache.db_read`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from apps.catalog.models import (
    Deployment,
    DeploymentKey,
    DeploymentStatus,
    Replica,
    ReplicaStatus,
)

ROUTABLE_DEPLOYMENT_STATUSES = frozenset({DeploymentStatus.READY, DeploymentStatus.DEGRADED})
# A key of a deployment in one of these is refused; a deployment in one is not the user's.
ENDED_DEPLOYMENT_STATUSES = (DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


@dataclass(frozen=True)
class KeyIdentity:
    """Who a deployment key belongs to."""

    key_id: uuid.UUID
    deployment_id: uuid.UUID
    owner_id: uuid.UUID


@dataclass(frozen=True)
class ReplicaRoute:
    """A READY replica: where to send requests (`base_url` + the OpenAI path, e.g.
    `http://10.0.0.5:8000` + `/v1/chat/completions`)."""

    replica_id: int
    deployment_id: uuid.UUID
    base_url: str


@dataclass(frozen=True)
class DeploymentRoute:
    """A deployment as the proxy sees it: its name, what it serves, its READY replicas."""

    id: uuid.UUID
    owner_id: uuid.UUID
    model_name: str
    capabilities: frozenset[str]
    status: str
    rate_limit_per_minute: int
    replicas: tuple[ReplicaRoute, ...]
    created: int = 0  # epoch seconds

    @property
    def routable(self) -> bool:
        return self.status in ROUTABLE_DEPLOYMENT_STATUSES and bool(self.replicas)


def load_identity(digest: str) -> KeyIdentity | None:
    row = (
        DeploymentKey.objects.filter(digest=digest, revoked_at__isnull=True)
        .exclude(deployment__status__in=ENDED_DEPLOYMENT_STATUSES)
        .values("id", "deployment_id", "deployment__owner_id")
        .first()
    )
    if row is None:
        return None
    return KeyIdentity(
        key_id=row["id"], deployment_id=row["deployment_id"], owner_id=row["deployment__owner_id"]
    )


def route_from(deployment: Any, replicas: Iterable[Any]) -> DeploymentRoute:
    return DeploymentRoute(
        id=deployment.id,
        owner_id=deployment.owner_id,
        model_name=deployment.model_name,
        capabilities=frozenset(deployment.capabilities or ()),
        status=deployment.status,
        rate_limit_per_minute=deployment.rate_limit_per_minute,
        replicas=tuple(
            ReplicaRoute(replica_id=r.id, deployment_id=deployment.id, base_url=r.base_url)
            for r in replicas
            if r.status == ReplicaStatus.READY and r.base_url
        ),
        created=int(deployment.created_at.timestamp()),
    )


def load_owner_routes(owner_id: uuid.UUID) -> list[DeploymentRoute]:
    deployments = list(
        Deployment.objects.filter(owner_id=owner_id)
        .exclude(status__in=ENDED_DEPLOYMENT_STATUSES)
        .only(
            "id",
            "owner_id",
            "model_name",
            "capabilities",
            "status",
            "rate_limit_per_minute",
            "created_at",
        )
        .order_by("created_at")
    )
    by_deployment: dict[uuid.UUID, list[Any]] = {d.id: [] for d in deployments}
    for replica in Replica.objects.filter(
        deployment_id__in=list(by_deployment), status=ReplicaStatus.READY
    ).only("id", "deployment_id", "status", "base_url"):
        by_deployment[replica.deployment_id].append(replica)
    return [route_from(d, by_deployment[d.id]) for d in deployments]
