"""Markup and ranking strategies (pure functions)."""

import pytest

from apps.sourcing.adapters.base import Offer
from apps.sourcing.ranking import (
    LaunchHistory,
    Strategy,
    markup_percent,
    price,
    rank,
    with_markup,
)

GPU = "RTX 4090"


def test_our_launch_history_feeds_highest_reliability():
    offers = price(
        [
            Offer("vast_ai", "1", GPU, 1, 24, 400_000, reliability=0.99),
            Offer("runpod", "2", GPU, 1, 24, 500_000, reliability=0.97),
        ],
        default=25,
        overrides={},
    )
    assert rank(offers, Strategy.HIGHEST_RELIABILITY)[0].provider == "vast_ai"
    history = {("vast_ai", GPU): LaunchHistory(attempts=20, successes=5)}
    assert rank(offers, Strategy.HIGHEST_RELIABILITY, history)[0].provider == "runpod"
    assert rank(offers, Strategy.LOWEST_PRICE, history)[0].provider == "vast_ai"


def test_markup_most_specific_wins_and_never_rounds_below_cost():
    overrides = {"runpod": 10, "H100 SXM": 30, "vast_ai:H100 SXM": 40}
    assert markup_percent("runpod", GPU, default=25, overrides=overrides) == 10
    assert markup_percent("runpod", "H100 SXM", default=25, overrides=overrides) == 30
    assert markup_percent("vast_ai", "H100 SXM", default=25, overrides=overrides) == 40
    assert markup_percent("lambda_labs", GPU, default=25, overrides=overrides) == 25
    assert with_markup(1_000_000, 25) == 1_250_000
    assert with_markup(333_333, 25) == 416_667  # 416,666.25 rounded up


def test_best_value_is_price_per_gb_and_balanced_weighs_risk():
    offers = price(
        [
            Offer("a", "1", "RTX A6000", 1, 48, 800_000, reliability=0.99),
            Offer("b", "2", GPU, 1, 24, 500_000, reliability=0.99),
            Offer("c", "3", GPU, 1, 24, 450_000, reliability=0.5),
        ],
        default=25,
        overrides={},
    )
    assert [p.provider for p in rank(offers, Strategy.BEST_VALUE)] == ["a", "c", "b"]
    assert rank(offers, Strategy.LOWEST_PRICE)[0].provider == "c"
    assert rank(offers, Strategy.BALANCED)[0].provider != "c"  # cheap but unreliable


@pytest.mark.django_db
def test_the_same_book_gives_a_different_placement_per_strategy():
    from django.utils import timezone

    from apps.sourcing.models import OfferBookEntry
    from apps.sourcing.offer_book import book_offers

    now = timezone.now()
    for provider, upstream, vram, reliability in (
        ("vast_ai", 2_000_000, 80, 0.90),  # cheapest, least reliable
        ("runpod", 2_200_000, 94, 0.99),  # most VRAM per dollar
        ("lambda_labs", 2_100_000, 80, 0.995),  # most reliable
    ):
        OfferBookEntry.objects.create(
            provider=provider,
            offer_id=f"{provider}-1",
            gpu_model="H100 NVL",
            gpu_count=1,
            vram_gb=vram,
            upstream_price_per_hour=upstream,
            upstream_price_per_gpu_hour=upstream,
            price_per_gpu_hour=upstream,
            markup_percent=0,
            reliability=reliability,
            fetched_at=now,
        )
    first = {
        strategy: book_offers(gpu_model="H100 NVL", strategy=strategy, limit=1)[0].provider
        for strategy in Strategy
    }
    assert first == {
        Strategy.LOWEST_PRICE: "vast_ai",
        Strategy.BEST_VALUE: "runpod",
        Strategy.HIGHEST_RELIABILITY: "lambda_labs",
        Strategy.BALANCED: "lambda_labs",
    }
