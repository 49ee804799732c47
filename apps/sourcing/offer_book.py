"""The offer book: every provider's offers, refreshed by a periodic task and priced with our
markup, so a pod request reads one indexed table instead of waiting on three APIs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import Offer, OfferFilters
from apps.sourcing.models import OfferBookEntry
from apps.sourcing.multi import MultiProviderService, SearchResult
from apps.sourcing.ranking import PricedOffer, Strategy, rank
from apps.sourcing.registry import (
    configured_providers,
    launch_history,
    make_service,
    publish_health,
)

FIELDS = (
    "gpu_model",
    "gpu_count",
    "vram_gb",
    "upstream_price_per_hour",
    "upstream_price_per_gpu_hour",
    "price_per_gpu_hour",
    "markup_percent",
    "region",
    "reliability",
    "spot",
    "provider_gpu_name",
    "extra",
    "fetched_at",
    "stale",
)


@dataclass
class RefreshResult:
    offers: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    stale_providers: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


async def _search(service: MultiProviderService, limit: int, spot: bool = False) -> SearchResult:
    try:
        return await service.search(OfferFilters(limit=limit, spot=spot))
    finally:
        await service.aclose()


def spot_providers() -> list[str]:
    return [n for n in configured_providers() if ADAPTERS[n].supports_spot]


def offer_book_refresh(*, limit: int = 20_000) -> RefreshResult:
    """Ask every provider at once (each within its deadline) and replace its lines of the
    book. A provider that missed its deadline or failed keeps its old lines, marked stale."""
    if not settings.SOURCING_ENABLED:
        return RefreshResult()  # sourcing off: no upstream traffic at all
    found = asyncio.run(_search(make_service(), limit))
    # Spot (bid) offers of the clouds that have a spot market, as their own lines.
    spot_names = spot_providers()
    if spot_names:
        spot = asyncio.run(_search(make_service(spot_names), limit, spot=True))
        found.offers += spot.offers
        found.errors.update(spot.errors)
        found.skipped |= spot.skipped
        found.stale_providers |= spot.stale_providers
    publish_health()
    now = timezone.now()
    result = RefreshResult(
        stale_providers=found.stale_providers, errors=found.errors, seconds=found.seconds
    )
    fresh: dict[str, list[PricedOffer]] = {}
    for priced in found.offers:
        if not priced.stale:
            fresh.setdefault(priced.provider, []).append(priced)
    answered = set(configured_providers()) - set(found.errors) - found.skipped
    with transaction.atomic():
        for provider in answered:
            offers = fresh.get(provider, [])
            rows = [_row(p, now) for p in offers]
            OfferBookEntry.objects.bulk_create(
                rows,
                batch_size=2000,
                update_conflicts=True,
                unique_fields=["provider", "offer_id", "spot"],
                update_fields=list(FIELDS),
            )
            OfferBookEntry.objects.filter(provider=provider).exclude(fetched_at=now).delete()
            result.by_provider[provider] = len(rows)
            result.offers += len(rows)
        failed = set(found.errors) | found.skipped
        if failed:
            OfferBookEntry.objects.filter(provider__in=failed).update(stale=True)
    return result


def _row(priced: PricedOffer, now: datetime) -> OfferBookEntry:
    o = priced.offer
    return OfferBookEntry(
        provider=o.provider,
        offer_id=o.offer_id,
        gpu_model=o.gpu_model,
        gpu_count=o.gpu_count,
        vram_gb=o.vram_gb,
        upstream_price_per_hour=o.price_per_hour,
        upstream_price_per_gpu_hour=o.price_per_gpu_hour,
        price_per_gpu_hour=priced.our_price_per_gpu_hour,
        markup_percent=priced.markup_percent,
        region=o.region[:64],
        reliability=o.reliability,
        spot=o.spot,
        provider_gpu_name=o.provider_gpu_name[:128],
        extra=dict(o.extra),
        fetched_at=now,
        stale=False,
    )


def entry_to_priced(entry: OfferBookEntry, now: datetime | None = None) -> PricedOffer:
    now = now or timezone.now()
    offer = Offer(
        provider=entry.provider,
        offer_id=entry.offer_id,
        gpu_model=entry.gpu_model,
        gpu_count=entry.gpu_count,
        vram_gb=entry.vram_gb,
        price_per_hour=entry.upstream_price_per_hour,
        region=entry.region,
        reliability=entry.reliability,
        spot=entry.spot,
        provider_gpu_name=entry.provider_gpu_name,
        extra=entry.extra,
    )
    return PricedOffer(
        offer=offer,
        markup_percent=entry.markup_percent,
        our_price_per_gpu_hour=entry.price_per_gpu_hour,
        stale=entry.stale,
        age_seconds=(now - entry.fetched_at).total_seconds(),
    )


def book_offers(
    *,
    gpu_model: str,
    gpu_count: int = 1,
    min_vram_gb: int = 0,
    max_price_per_gpu_hour: int | None = None,
    max_age_s: int | None = None,
    strategy: Strategy = Strategy.LOWEST_PRICE,
    spot: bool = False,
    providers: list[str] | None = None,
    limit: int = 20,
) -> list[PricedOffer]:
    """The best `limit` offers of the book for a request, in strategy order: on-demand
    offers, or spot (bid) offers for an interruptible pod."""
    now = timezone.now()
    query = OfferBookEntry.objects.filter(gpu_model=gpu_model, gpu_count=gpu_count, spot=spot)
    if providers is not None:
        query = query.filter(provider__in=providers)
    if min_vram_gb:
        query = query.filter(vram_gb__gte=min_vram_gb)
    if max_price_per_gpu_hour is not None:
        query = query.filter(price_per_gpu_hour__lte=max_price_per_gpu_hour)
    age = settings.SOURCING_OFFER_MAX_AGE_S if max_age_s is None else max_age_s
    query = query.filter(fetched_at__gte=now - timedelta(seconds=age))
    if strategy == Strategy.LOWEST_PRICE:
        entries = list(query.order_by("price_per_gpu_hour", "-reliability")[:limit])
        return [entry_to_priced(e, now) for e in entries]
    # Other strategies rank every candidate: read plain rows, not model instances.
    priced = [
        PricedOffer(
            offer=Offer(
                provider=row[0],
                offer_id=row[1],
                gpu_model=gpu_model,
                gpu_count=gpu_count,
                vram_gb=row[2],
                price_per_hour=row[3],
                region=row[4],
                reliability=row[5],
                spot=row[6],
                provider_gpu_name=row[7],
                extra=row[8],
            ),
            markup_percent=row[9],
            our_price_per_gpu_hour=row[10],
            stale=row[11],
            age_seconds=(now - row[12]).total_seconds(),
        )
        for row in query.values_list(
            "provider",
            "offer_id",
            "vram_gb",
            "upstream_price_per_hour",
            "region",
            "reliability",
            "spot",
            "provider_gpu_name",
            "extra",
            "markup_percent",
            "price_per_gpu_hour",
            "stale",
            "fetched_at",
        )
    ]
    history = launch_history() if strategy != Strategy.BEST_VALUE else {}
    return rank(priced, strategy, history)[:limit]
