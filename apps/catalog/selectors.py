"""Reads for the catalog API: template search, a user's deployments, deployment metrics."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db.models import Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from apps.catalog.load import keys_tokens_this_month
from apps.catalog.models import (
    ColdStart,
    Deployment,
    DeploymentKey,
    ModelTemplate,
    ModelUsageLog,
    Replica,
)
from apps.nodes.models import Gpu


def templates_search(
    *,
    category: str | None = None,
    capability: str | None = None,
    max_vram_gb: int | None = None,
    gpu: str | None = None,
    search: str | None = None,
) -> list[ModelTemplate]:
    templates = ModelTemplate.objects.filter(is_active=True)
    if category:
        templates = templates.filter(category=category)
    if max_vram_gb is not None:
        templates = templates.filter(min_vram_gb__lte=max_vram_gb)
    if gpu:
        templates = templates.filter(recommended_gpu__iexact=gpu)
    if search:
        templates = templates.filter(
            Q(name__icontains=search)
            | Q(slug__icontains=search)
            | Q(served_model__icontains=search)
        )
    found = list(templates)
    if capability:  # a JSON list: filtered here so SQLite and Postgres agree
        found = [t for t in found if capability in t.capabilities]
    return found


def deployments_for(user: Any) -> QuerySet[Deployment]:
    """The user's deployments with their replicas, pods and keys in four queries."""
    return (
        Deployment.objects.for_user(user)
        .select_related("template")
        .prefetch_related(
            Prefetch("replica_set", queryset=Replica.objects.select_related("pod")),
            Prefetch("keys", queryset=DeploymentKey.objects.filter(revoked_at__isnull=True)),
        )
    )


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    index = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return round(values[index], 2)


def deployment_metrics(*, deployment: Deployment, window_s: int) -> dict[str, Any]:
    """Traffic over the last `window_s` seconds from the usage log (requests/s, p50/p95
    latency and time to first byte, tokens, errors) and the replicas' GPUs as their nodes last
    reported them."""
    since = timezone.now() - timedelta(seconds=window_s)
    usage = ModelUsageLog.objects.filter(deployment=deployment, at__gte=since)
    latencies = sorted(float(v or 0) for v in usage.values_list("latency_ms", flat=True)[:200_000])
    first_bytes = sorted(
        float(v) for v in usage.values_list("first_byte_ms", flat=True)[:200_000] if v is not None
    )
    totals = usage.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    requests = len(latencies)
    errors = usage.filter(status_code__gte=400).count()
    by_endpoint: dict[str, int] = {}
    for endpoint in usage.values_list("endpoint", flat=True)[:200_000]:
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + 1

    gpus: list[dict[str, Any]] = []
    for replica in deployment.replica_set.select_related("pod__node").filter(pod__isnull=False):
        pod = replica.pod
        if pod is None or pod.node is None:
            continue
        for gpu in Gpu.objects.filter(node=pod.node, index__in=pod.gpu_indices or []):
            gpus.append(
                {
                    "replica": replica.pk,
                    "node": pod.node.hostname,
                    "index": gpu.index,
                    "model": gpu.model,
                    "utilization_pct": gpu.utilization_pct,
                    "memory_used_mb": gpu.memory_used_mb,
                    "memory_total_mb": gpu.memory_total_mb,
                    "at": gpu.telemetry_at,
                }
            )
    utilisations = [float(g["utilization_pct"]) for g in gpus if g["utilization_pct"] is not None]
    return {
        "window_s": window_s,
        "requests": requests,
        "requests_per_s": round(requests / window_s, 4) if window_s else 0,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "latency_ms": {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)},
        "first_byte_ms": {
            "p50": _percentile(first_bytes, 0.5),
            "p95": _percentile(first_bytes, 0.95),
        },
        "tokens": {
            "prompt": totals["prompt"] or 0,
            "completion": totals["completion"] or 0,
        },
        "by_endpoint": by_endpoint,
        "gpu": {
            "utilization_pct_avg": round(sum(utilisations) / len(utilisations), 1)
            if utilisations
            else None,
            "gpus": gpus,
        },
    }


def cold_starts(*, deployment: Deployment, limit: int = 20) -> dict[str, Any]:
    """The deployment's recent cold starts (request held → first byte) and their p50 / max
    over the last `limit`."""
    rows = list(
        ColdStart.objects.filter(deployment=deployment).values(
            "at", "endpoint", "held_ms", "first_byte_ms"
        )[:limit]
    )
    times = sorted(float(r["first_byte_ms"]) for r in rows if r["first_byte_ms"] is not None)
    return {
        "count": ColdStart.objects.filter(deployment=deployment).count(),
        "recent": rows,
        "first_byte_ms": {
            "p50": _percentile(times, 0.5),
            "max": round(times[-1], 2) if times else None,
        },
    }


def deployment_keys(*, deployment: Deployment) -> list[dict[str, Any]]:
    """The deployment's active keys with the tokens each used this month."""
    keys = list(DeploymentKey.objects.filter(deployment=deployment, revoked_at__isnull=True))
    used = keys_tokens_this_month([k.pk for k in keys])
    return [
        {
            "id": k.pk,
            "name": k.name,
            "prefix": k.prefix,
            "monthly_token_budget": k.monthly_token_budget,
            "rate_limit_per_minute": k.rate_limit_per_minute,
            "tokens_this_month": used.get(k.pk, 0),
            "created_at": k.created_at,
        }
        for k in keys
    ]
