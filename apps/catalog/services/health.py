"""Health checks: each live replica's health path is probed (concurrently, with a timeout); a
replica that answers is READY, one that stops answering UNHEALTHY, one that never comes up in
time is given up (its pod stopped)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.catalog.locks import lock_replica
from apps.catalog.models import (
    Replica,
)
from apps.catalog.services.lifecycle import R, deployment_refresh_status, replica_fail
from apps.pods import services as pod_services


async def _probe(client: httpx.AsyncClient, url: str) -> str | None:
    """None when `url` answers 2xx, else what went wrong."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}"[:300] or exc.__class__.__name__
    if 200 <= response.status_code < 300:
        return None
    return f"health check answered {response.status_code}"


async def _probe_all(targets: list[tuple[int, str]]) -> dict[int, str | None]:
    timeout = httpx.Timeout(settings.CATALOG_HEALTH_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        results = await asyncio.gather(*(_probe(client, url) for _, url in targets))
    return {replica_id: result for (replica_id, _), result in zip(targets, results, strict=True)}


@dataclass
class HealthResult:
    checked: int = 0
    ready: int = 0
    failing: int = 0


def replicas_health_check(*, loading_only: bool = False) -> HealthResult:
    """Periodic: GET every running replica's health path. A LOADING replica that answers
    becomes READY; a READY one that fails CATALOG_HEALTH_FAILURES_UNHEALTHY checks in a row
    leaves service (UNHEALTHY) until it answers again; one LOADING for longer than
    CATALOG_LOADING_TIMEOUT_S fails and its pod is stopped (the provisioner replaces it).
    `loading_only`: probe only LOADING replicas (the autoscaler's fast path to READY)."""
    statuses = (R.LOADING,) if loading_only else (R.LOADING, R.READY, R.UNHEALTHY)
    rows = list(
        Replica.objects.filter(status__in=statuses, base_url__gt="").values_list(
            "id", "base_url", "deployment__health_path"
        )
    )
    result = HealthResult(checked=len(rows))
    if not rows:
        return result
    probes = asyncio.run(_probe_all([(rid, base + path) for rid, base, path in rows]))
    now = timezone.now()
    touched: set[uuid.UUID] = set()
    timed_out: list[int] = []
    for replica_id, error in probes.items():
        with transaction.atomic():
            replica = lock_replica(replica_id)
            if replica is None or replica.status not in (R.LOADING, R.READY, R.UNHEALTHY):
                continue
            replica.last_health_at = now
            fields = ["last_health_at", "consecutive_failures", "status", "status_reason"]
            if error is None:
                result.ready += 1
                replica.consecutive_failures = 0
                if replica.status != R.READY:
                    replica.status = R.READY
                    replica.status_reason = "health check passed"
                    replica.ready_at = replica.ready_at or now
                    fields.append("ready_at")
            else:
                result.failing += 1
                replica.consecutive_failures += 1
                if replica.status == R.LOADING:
                    started = replica.pod.started_at if replica.pod else None
                    since = started or replica.created_at
                    replica.status_reason = f"loading: {error}"[:500]
                    if now - since > timedelta(seconds=settings.CATALOG_LOADING_TIMEOUT_S):
                        timed_out.append(replica.pk)
                elif replica.consecutive_failures >= settings.CATALOG_HEALTH_FAILURES_UNHEALTHY:
                    replica.status = R.UNHEALTHY
                    replica.status_reason = error[:500]
            replica.save(update_fields=[*fields, "updated_at"])
            touched.add(replica.deployment_id)
    for replica_id in timed_out:
        _replica_give_up(
            replica_id=replica_id,
            reason=f"did not answer its health path within {settings.CATALOG_LOADING_TIMEOUT_S} s",
        )
    for deployment_id in touched:
        deployment_refresh_status(deployment_id=deployment_id)
    return result


def _replica_give_up(*, replica_id: int, reason: str) -> None:
    replica = Replica.objects.select_related("pod").filter(pk=replica_id).first()
    if replica is None:
        return
    replica_fail(replica_id=replica_id, reason=reason)
    if replica.pod is not None:
        pod_services.pod_stop(pod=replica.pod, reason=f"replica failed: {reason}")
