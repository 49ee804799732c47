"""A user's side of deployments: deploy a template, stop a deployment, issue and rotate its
API keys."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.spend import spend_refusal
from apps.catalog.locks import lock_deployment, lock_deployment_key
from apps.catalog.models import (
    DEPLOYMENT_FINAL,
    REPLICA_LIVE,
    Deployment,
    DeploymentEvent,
    DeploymentKey,
    DeploymentStatus,
    ModelTemplate,
    Replica,
    ReplicaStatus,
)
from apps.catalog.services import lifecycle, provisioning
from apps.catalog.services.scaling import DEFAULT_SCALING, scaling_validate
from apps.core.gpu_models import CPU_MODEL
from apps.core.secrets import secret_issue
from apps.pods import services as pod_services
from apps.pods.models import ON_NODE_STATUSES, Pod, PodStatus

KEY_PREFIX = "sk_"


@dataclass(frozen=True)
class IssuedKey:
    key: DeploymentKey
    raw: str  # shown once


@dataclass(frozen=True)
class CreatedDeployment:
    deployment: Deployment
    key: IssuedKey


def deployment_key_issue(
    *,
    deployment: Deployment,
    name: str = "default",
    monthly_token_budget: int | None = None,
    rate_limit_per_minute: int | None = None,
) -> IssuedKey:
    """A new `sk_…` key for `deployment`, with its own optional monthly token budget and
    per-minute rate limit; only its digest is stored."""
    secret = secret_issue(prefix=KEY_PREFIX)
    key = DeploymentKey.objects.create(
        deployment=deployment,
        name=name,
        prefix=secret.display_prefix,
        digest=secret.digest,
        monthly_token_budget=monthly_token_budget,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    return IssuedKey(key=key, raw=secret.raw)


_UNSET: Any = object()


@transaction.atomic
def deployment_key_update(
    *,
    key: DeploymentKey,
    monthly_token_budget: int | None = _UNSET,
    rate_limit_per_minute: int | None = _UNSET,
) -> DeploymentKey:
    """Change a key's budget or rate limit (None removes it). The proxy sees the change within
    PROXY_ROUTE_CACHE_S."""
    locked = lock_deployment_key(key.pk)
    fields = []
    if monthly_token_budget is not _UNSET:
        locked.monthly_token_budget = monthly_token_budget
        fields.append("monthly_token_budget")
    if rate_limit_per_minute is not _UNSET:
        locked.rate_limit_per_minute = rate_limit_per_minute
        fields.append("rate_limit_per_minute")
    if fields:
        locked.save(update_fields=fields)
    return locked


@transaction.atomic
def deployment_key_revoke(*, key: DeploymentKey) -> DeploymentKey:
    """Revoke one key; the deployment's other keys go on working."""
    locked = lock_deployment_key(key.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
    return locked


@transaction.atomic
def deployment_key_rotate(*, deployment: Deployment, name: str = "default") -> IssuedKey:
    """Revoke every active key of `deployment` and issue a new one."""
    lock_deployment(deployment.pk)
    DeploymentKey.objects.filter(deployment=deployment, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return deployment_key_issue(deployment=deployment, name=name)


def deployment_create(
    *,
    owner: User,
    template: ModelTemplate,
    name: str = "",
    model_name: str = "",
    gpu_model: str = "",
    gpu_count: int | None = None,
    replicas: int | None = None,
    overrides: dict[str, Any] | None = None,
    price_cap_per_gpu_hour: int | None = None,
    rate_limit_per_minute: int | None = None,
    scaling: dict[str, int] | None = None,
) -> CreatedDeployment:
    """Deploy `template` for `owner`: a PENDING deployment with its first key, then its replica
    pods are created (placed at once where capacity allows). `overrides` may replace the
    template's `args`, `env` (merged) and `health_path`. `scaling` sets any of the scaling
    settings (see `scaling.SCALING_FIELDS`); without them the deployment keeps `replicas`
    replicas (min = max = replicas); with them it starts at `replicas` within the bounds."""
    overrides = overrides or {}
    if replicas is None:
        replicas = (scaling or {}).get("min_replicas", 1)
    bounds = scaling_validate(
        current=replace(DEFAULT_SCALING, min_replicas=replicas, max_replicas=replicas),
        changes=dict(scaling or {}),
    )
    replicas = max(bounds.min_replicas, min(bounds.max_replicas, replicas))
    gpu_count = template.gpu_count if gpu_count is None else gpu_count
    # The same refusal pod creation applies (no balance, monthly cap, hourly burn), before
    # anything is made.
    burn = sum(
        p.hourly_rate
        for p in Pod.objects.filter(owner=owner, status__in=ON_NODE_STATUSES)
        .exclude(status=PodStatus.STOPPING)
        .only("price_per_gpu_hour", "gpu_count")
    )
    refusal = spend_refusal(user_id=owner.pk, current_burn=burn)
    if refusal:
        raise pod_services.SpendRefusedError(refusal)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            owner=owner,
            template=template,
            name=name or template.slug,
            model_name=model_name or template.slug,
            capabilities=list(template.capabilities),
            image=template.image,
            args=list(overrides.get("args") or template.args),
            env={**template.env, **(overrides.get("env") or {})},
            port=template.port,
            health_path=overrides.get("health_path") or template.health_path,
            host_network=template.host_network,
            gpu_model=gpu_model or (template.recommended_gpu if gpu_count else CPU_MODEL),
            gpu_count=gpu_count,
            min_vram_mb=template.min_vram_gb * 1024,
            price_cap_per_gpu_hour=price_cap_per_gpu_hour,
            replicas=replicas,
            **bounds.__dict__,
            **(
                {"rate_limit_per_minute": rate_limit_per_minute}
                if rate_limit_per_minute is not None
                else {}
            ),
        )
        DeploymentEvent.objects.create(
            deployment=deployment,
            from_status=DeploymentStatus.PENDING,
            to_status=DeploymentStatus.PENDING,
            reason="deployed",
        )
        key = deployment_key_issue(deployment=deployment)
    provisioning.deployment_provision(deployment_id=deployment.pk)
    if replicas == 0:  # scaled to zero from the start: IDLE until its first request
        lifecycle.deployment_refresh_status(deployment_id=deployment.pk)
    deployment.refresh_from_db()
    return CreatedDeployment(deployment=deployment, key=key)


def deployment_stop(*, deployment: Deployment, reason: str = "deleted by its owner") -> Deployment:
    """Stop serving: the deployment is STOPPED (its keys stop working), its replicas' pods are
    stopped (billing ends now)."""
    with transaction.atomic():
        locked = lock_deployment(deployment.pk)
        if locked is None or locked.status == DeploymentStatus.STOPPED:
            return locked or deployment
        lifecycle.deployment_transition(
            deployment=locked, to=DeploymentStatus.STOPPED, reason=reason
        )
        Replica.objects.filter(deployment=locked, status__in=REPLICA_LIVE).update(
            status=ReplicaStatus.STOPPED,
            status_reason=reason[:500],
            base_url="",
            host_port=None,
            updated_at=timezone.now(),
        )
    for pod in Pod.objects.filter(replica__deployment=locked).exclude(
        status__in=(PodStatus.STOPPED, PodStatus.FAILED, PodStatus.TERMINATED)
    ):
        pod_services.pod_stop(pod=pod, reason=f"deployment {locked.name}: {reason}")
    return locked


def deployment_is_live(deployment: Deployment) -> bool:
    return deployment.status not in DEPLOYMENT_FINAL
