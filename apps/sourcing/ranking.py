"""What we would charge for an upstream offer (markup) and the order we try offers in
(ranking strategies)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from apps.pods.strategy import balanced_score
from apps.sourcing.adapters.base import Offer


class Strategy(enum.StrEnum):
    LOWEST_PRICE = "LOWEST_PRICE"
    BEST_VALUE = "BEST_VALUE"  # price per GB of VRAM
    HIGHEST_RELIABILITY = "HIGHEST_RELIABILITY"
    BALANCED = "BALANCED"


@dataclass(frozen=True)
class LaunchHistory:
    attempts: int = 0
    successes: int = 0

    @property
    def success_rate(self) -> float:
        """Laplace-smoothed: a provider we never tried starts at 0.5, not at 0 or 1."""
        return (self.successes + 1) / (self.attempts + 2)


@dataclass(frozen=True)
class PricedOffer:
    offer: Offer
    markup_percent: int
    our_price_per_gpu_hour: int  # micro-dollars, what a pod on it is charged
    stale: bool = False
    age_seconds: float = 0.0

    @property
    def provider(self) -> str:
        return self.offer.provider


def markup_percent(
    provider: str, gpu_model: str, *, default: int, overrides: Mapping[str, int]
) -> int:
    """Most specific wins: "provider:GPU", then "GPU", then "provider", then the default."""
    for key in (f"{provider}:{gpu_model}", gpu_model, provider):
        if key in overrides:
            return int(overrides[key])
    return default


def with_markup(upstream_per_gpu_hour: int, percent: int) -> int:
    """Upstream price plus `percent`, rounded up to the micro-dollar (never under cost)."""
    return -(-upstream_per_gpu_hour * (100 + percent) // 100)


def price(
    offers: Iterable[Offer],
    *,
    default: int,
    overrides: Mapping[str, int],
    stale: bool = False,
    age_seconds: float = 0.0,
) -> list[PricedOffer]:
    out = []
    for offer in offers:
        percent = markup_percent(
            offer.provider, offer.gpu_model, default=default, overrides=overrides
        )
        out.append(
            PricedOffer(
                offer=offer,
                markup_percent=percent,
                our_price_per_gpu_hour=with_markup(offer.price_per_gpu_hour, percent),
                stale=stale,
                age_seconds=age_seconds,
            )
        )
    return out


def reliability(offer: Offer, history: Mapping[tuple[str, str], LaunchHistory]) -> float:
    """The offer's own figure blended with our launch history for (provider, GPU)."""
    own = offer.reliability or 0.9
    past = history.get((offer.provider, offer.gpu_model))
    if past is None or past.attempts == 0:
        return own
    return (own + past.success_rate) / 2


def rank(
    offers: list[PricedOffer],
    strategy: Strategy,
    history: Mapping[tuple[str, str], LaunchHistory] | None = None,
) -> list[PricedOffer]:
    history = history or {}
    if not offers:
        return []
    key: Callable[[PricedOffer], tuple[float, ...]]
    if strategy == Strategy.LOWEST_PRICE:

        def key(p: PricedOffer) -> tuple[float, ...]:
            return (p.our_price_per_gpu_hour, -p.offer.reliability)

    elif strategy == Strategy.BEST_VALUE:

        def key(p: PricedOffer) -> tuple[float, ...]:
            return (p.our_price_per_gpu_hour / max(p.offer.vram_gb, 1), p.our_price_per_gpu_hour)

    elif strategy == Strategy.HIGHEST_RELIABILITY:

        def key(p: PricedOffer) -> tuple[float, ...]:
            return (-reliability(p.offer, history), p.our_price_per_gpu_hour)

    else:
        cheapest = min(p.our_price_per_gpu_hour for p in offers) or 1
        best_value = min(p.our_price_per_gpu_hour / max(p.offer.vram_gb, 1) for p in offers) or 1

        def key(p: PricedOffer) -> tuple[float, ...]:
            score = balanced_score(  # apps.pods.strategy documents the trade-off
                price=p.our_price_per_gpu_hour,
                cheapest=cheapest,
                value=p.our_price_per_gpu_hour / max(p.offer.vram_gb, 1),
                best_value=best_value,
                reliability=reliability(p.offer, history),
            )
            return (score, p.our_price_per_gpu_hour)

    stale_last = sorted(offers, key=lambda p: p.stale)  # fresh offers first among equals
    return sorted(stale_last, key=key)
