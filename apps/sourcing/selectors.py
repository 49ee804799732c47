"""Reads for the dashboard API: the offer book, availability, price comparison, provider
health and the money of sourcing."""

from __future__ import annotations

from datetime import datetime, timedelta
from statistics import median
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max, Min, QuerySet, Sum
from django.utils import timezone

from apps.pods.models import UsageRecord
from apps.pods.selectors import Offer as PodOffer
from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import ExecutionModel
from apps.sourcing.models import (
    LIVE_STATUSES,
    InstanceStatus,
    LaunchStat,
    OfferBookEntry,
    ProvisionedInstance,
    UpstreamCharge,
)
from apps.sourcing.offer_book import entry_to_priced
from apps.sourcing.ranking import reliability
from apps.sourcing.registry import configured_providers, health, launch_history
from apps.sourcing.services.common import sourcing_on

SORTS = {
    "price": ("price_per_gpu_hour", "id"),
    "-price": ("-price_per_gpu_hour", "id"),
    "reliability": ("-reliability", "price_per_gpu_hour", "id"),
    "vram": ("-vram_gb", "price_per_gpu_hour", "id"),
    "age": ("-fetched_at", "id"),
    "price_per_gb": ("price_per_gb", "id"),
}


def offers(
    *,
    gpu_model: str | None = None,
    provider: str | None = None,
    gpu_count: int | None = None,
    min_vram_gb: int | None = None,
    max_price: int | None = None,
    region: str | None = None,
    spot: bool | None = None,
    sort: str = "price",
) -> QuerySet[OfferBookEntry]:
    query = OfferBookEntry.objects.all()
    if gpu_model:
        query = query.filter(gpu_model=gpu_model)
    if provider:
        query = query.filter(provider=provider)
    if gpu_count:
        query = query.filter(gpu_count=gpu_count)
    if min_vram_gb:
        query = query.filter(vram_gb__gte=min_vram_gb)
    if max_price is not None:
        query = query.filter(price_per_gpu_hour__lte=max_price)
    if region:
        query = query.filter(region__iexact=region)
    if spot is not None:
        query = query.filter(spot=spot)
    if sort == "price_per_gb":
        query = query.annotate(price_per_gb=F("price_per_gpu_hour") / F("vram_gb"))
    return query.order_by(*SORTS[sort])


def availability() -> list[dict[str, Any]]:
    rows = (
        OfferBookEntry.objects.values("gpu_model")
        .annotate(
            offers=Count("id"),
            gpus=Sum("gpu_count"),
            min_price=Min("price_per_gpu_hour"),
            newest=Max("fetched_at"),
        )
        .order_by("gpu_model")
    )
    providers: dict[str, set[str]] = {}
    for gpu, provider in OfferBookEntry.objects.values_list("gpu_model", "provider").distinct():
        providers.setdefault(gpu, set()).add(provider)
    now = timezone.now()
    return [
        {
            "gpu_model": r["gpu_model"],
            "offers": r["offers"],
            "gpus": r["gpus"],
            "providers": sorted(providers.get(r["gpu_model"], ())),
            "min_price_per_gpu_hour": r["min_price"],
            "age_seconds": round((now - r["newest"]).total_seconds(), 1),
        }
        for r in rows
    ]


def price_comparison(gpu_model: str | None = None) -> list[dict[str, Any]]:
    """The same GPU across providers: cheapest, median and count of offers, our price."""
    query = OfferBookEntry.objects.filter(gpu_count=1)
    if gpu_model:
        query = query.filter(gpu_model=gpu_model)
    grouped: dict[str, dict[str, list[int]]] = {}
    for gpu, provider, price in query.values_list("gpu_model", "provider", "price_per_gpu_hour"):
        grouped.setdefault(gpu, {}).setdefault(provider, []).append(price)
    out = []
    for gpu in sorted(grouped):
        rows: list[dict[str, Any]] = [
            {
                "provider": provider,
                "offers": len(prices),
                "min_price_per_gpu_hour": min(prices),
                "median_price_per_gpu_hour": int(median(prices)),
            }
            for provider, prices in sorted(grouped[gpu].items())
        ]
        cheapest = min(r["min_price_per_gpu_hour"] for r in rows)
        out.append(
            {
                "gpu_model": gpu,
                "cheapest_provider": next(
                    r["provider"] for r in rows if r["min_price_per_gpu_hour"] == cheapest
                ),
                "providers": rows,
            }
        )
    return out


def provider_health() -> list[dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for s in LaunchStat.objects.all():
        row = stats.setdefault(
            s.provider, {"attempts": 0, "successes": 0, "activations": 0, "seconds": 0.0}
        )
        row["attempts"] += s.attempts
        row["successes"] += s.successes
        row["activations"] += s.activations
        row["seconds"] += s.seconds_to_active_total
    out = []
    for snap in health():
        launches = stats.get(
            snap["provider"], {"attempts": 0, "successes": 0, "activations": 0, "seconds": 0.0}
        )
        out.append(
            {
                **snap,
                "launch_attempts": launches["attempts"],
                "launch_successes": launches["successes"],
                "mean_seconds_to_active": round(launches["seconds"] / launches["activations"], 1)
                if launches["activations"]
                else None,
                "offers_in_book": OfferBookEntry.objects.filter(provider=snap["provider"]).count(),
            }
        )
    return out


def overview(*, staff: bool) -> dict[str, Any]:
    book = OfferBookEntry.objects.aggregate(
        offers=Count("id"), newest=Max("fetched_at"), oldest=Min("fetched_at")
    )
    now = timezone.now()
    body: dict[str, Any] = {
        "providers": configured_providers(),
        "offers": book["offers"],
        "gpu_models": OfferBookEntry.objects.values("gpu_model").distinct().count(),
        "book_age_seconds": round((now - book["oldest"]).total_seconds(), 1)
        if book["oldest"]
        else None,
        "cheapest": [
            {"gpu_model": r["gpu_model"], "min_price_per_gpu_hour": r["p"]}
            for r in OfferBookEntry.objects.values("gpu_model")
            .annotate(p=Min("price_per_gpu_hour"))
            .order_by("gpu_model")
        ],
    }
    if staff:
        by_status = dict(
            ProvisionedInstance.objects.values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        body["instances"] = {s: by_status.get(s, 0) for s in InstanceStatus.values}
        body["live_instances"] = sum(by_status.get(s, 0) for s in LIVE_STATUSES)
        body["provider_states"] = {h["provider"]: h["state"] for h in health()}
    return body


def cost_analytics(*, since: datetime) -> dict[str, Any]:
    """Upstream spend, revenue of sourced pods and margin, per provider and GPU model and in
    total, since `since`. (The operators' cost analytics endpoint adds the catalog's
    per-deployment margins: apps.catalog.api.CostAnalyticsView.)"""
    charges = UpstreamCharge.objects.filter(period_start__gte=since)
    spend_by: dict[tuple[str, str], int] = {
        (r["provider"], r["gpu_model"]): r["s"]
        for r in charges.values("provider", "gpu_model").annotate(s=Sum("amount"))
    }
    node_map = {
        node_id: (provider, gpu)
        for node_id, provider, gpu in ProvisionedInstance.objects.exclude(node=None).values_list(
            "node_id", "provider", "gpu_model"
        )
    }
    revenue_by: dict[tuple[str, str], int] = {}
    for node_id, amount in (
        UsageRecord.objects.filter(node_id__in=list(node_map), period_start__gte=since)
        .values("node_id")
        .annotate(s=Sum("amount"))
        .values_list("node_id", "s")
    ):
        key = node_map[node_id]
        revenue_by[key] = revenue_by.get(key, 0) + amount
    rows: list[dict[str, Any]] = []
    for key in sorted(set(spend_by) | set(revenue_by)):
        spend, revenue = spend_by.get(key, 0), revenue_by.get(key, 0)
        rows.append(
            {
                "provider": key[0],
                "gpu_model": key[1],
                "spend": spend,
                "revenue": revenue,
                "margin": revenue - spend,
            }
        )
    totals = {
        "spend": sum(r["spend"] for r in rows),
        "revenue": sum(r["revenue"] for r in rows),
    }
    totals["margin"] = totals["revenue"] - totals["spend"]
    by_provider: dict[str, dict[str, int]] = {}
    for r in rows:
        p = by_provider.setdefault(r["provider"], {"spend": 0, "revenue": 0, "margin": 0})
        for k in ("spend", "revenue", "margin"):
            p[k] += r[k]
    return {
        "since": since,
        "totals": totals,
        "by_provider": by_provider,
        "by_provider_gpu": rows,
    }


PROVIDER_NAMES = {"vast_ai": "Vast.ai", "runpod": "RunPod", "lambda_labs": "Lambda"}


def upstream_pod_offers() -> list[PodOffer]:
    """The upstream rows of the one price list (POD_OFFER_SOURCES): the fresh offer book by
    GPU model, provider and on-demand/spot, at our price (markup included), with the
    reliability HIGHEST_RELIABILITY and BALANCED rank by (the provider's figure blended with
    our launch history). With SOURCING_HIDE_PROVIDER_NAMES the provider's name is left out."""
    if not sourcing_on():
        return []
    now = timezone.now()
    fresh = OfferBookEntry.objects.filter(
        fetched_at__gte=now - timedelta(seconds=settings.SOURCING_OFFER_MAX_AGE_S)
    ).order_by("price_per_gpu_hour")
    history = launch_history()
    hide = settings.SOURCING_HIDE_PROVIDER_NAMES
    groups: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for entry in fresh:
        adapter = ADAPTERS.get(entry.provider)
        model = adapter.execution_model if adapter else ExecutionModel.VM
        kind = "container cloud" if model == ExecutionModel.CONTAINER else "VM cloud"
        key = (entry.gpu_model, kind if hide else entry.provider, entry.spot)
        group = groups.get(key)
        if group is None:  # the first is the cheapest
            group = groups[key] = {
                "entry": entry,
                "kind": f"upstream {kind}",
                "free": 0,
                "most": 0,
                "vram": entry.vram_gb * 1024,
            }
        group["free"] += entry.gpu_count
        group["most"] = max(group["most"], entry.gpu_count)
    rows = []
    for (_model, _who, spot), group in groups.items():
        entry = group["entry"]
        priced = entry_to_priced(entry, now)
        rows.append(
            PodOffer(
                gpu_model=entry.gpu_model,
                vram_mb=group["vram"],
                free_gpus=group["free"],
                max_gpus_per_node=group["most"],
                price_per_gpu_hour=entry.price_per_gpu_hour,
                source="upstream",
                provider_kind=group["kind"],
                provider="" if hide else PROVIDER_NAMES.get(entry.provider, entry.provider),
                reliability=round(reliability(priced.offer, history), 4),
                spot=spot,
            )
        )
    return rows


def default_since(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)
