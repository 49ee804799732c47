"""MultiProviderService against the simulators: failover, backoff, breaker, budget, and the
lost answer that must still give exactly one instance."""

import asyncio

import pytest

from apps.sourcing.adapters.base import InstanceConfig, OfferFilters, RetryBudget, RetryPolicy
from apps.sourcing.breaker import BreakerState, CircuitBreaker
from apps.sourcing.multi import MultiProviderService, NoOfferError
from apps.sourcing.ranking import Strategy
from tests.sourcing.conftest import Sleeps, make_adapter

pytestmark = pytest.mark.asyncio

GPU = "RTX 4090"  # sold by Vast and RunPod in the simulated markets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(
    sims,
    names=("vast_ai", "runpod"),
    *,
    policy=None,
    budget_ratio=0.1,
    clock=None,
    threshold=5,
    sleeps=None,
) -> MultiProviderService:
    adapters = {
        n: make_adapter(
            sims[n],
            n,
            policy=policy or RetryPolicy(timeout=2),
            sleeps=sleeps,
            budget=RetryBudget(ratio=budget_ratio, initial=5 if budget_ratio else 0),
        )
        for n in names
    }
    breakers = {
        n: CircuitBreaker(provider=n, failure_threshold=threshold, clock=clock or Clock())
        for n in names
    }
    return MultiProviderService(adapters, breakers=breakers, deadline=2.0)


def _live(sim, label):
    return [i for i in sim.control.instances() if i["label"] == label and not i["terminated"]]


async def test_search_is_concurrent_priced_and_ranked(sims):
    svc = service(sims, ("vast_ai", "runpod", "lambda_labs"))
    found = await svc.search(OfferFilters(), Strategy.LOWEST_PRICE)
    assert {p.provider for p in found.offers} == {"vast_ai", "runpod", "lambda_labs"}
    prices = [p.our_price_per_gpu_hour for p in found.offers]
    assert prices == sorted(prices)
    for p in found.offers:  # 25% markup, rounded up, never under cost
        assert p.our_price_per_gpu_hour == -(-p.offer.price_per_gpu_hour * 125 // 100)
    value = await svc.search(OfferFilters(), Strategy.BEST_VALUE)
    per_gb = [p.our_price_per_gpu_hour / p.offer.vram_gb for p in value.offers]
    assert per_gb == sorted(per_gb)
    reliable = await svc.search(OfferFilters(), Strategy.HIGHEST_RELIABILITY)
    assert reliable.offers[0].offer.reliability >= reliable.offers[-1].offer.reliability
    balanced = await svc.search(OfferFilters(), Strategy.BALANCED)
    assert len(balanced.offers) == len(found.offers)
    await svc.aclose()


async def test_markup_overrides_per_provider_and_gpu(sims):
    svc = service(sims)
    svc.markup_overrides = {"runpod": 10, f"vast_ai:{GPU}": 40}
    found = await svc.search(OfferFilters(gpu_model=GPU))
    assert {p.markup_percent for p in found.offers if p.provider == "runpod"} == {10}
    assert {p.markup_percent for p in found.offers if p.provider == "vast_ai"} == {40}
    await svc.aclose()


async def test_slow_provider_is_marked_stale_not_waited_for(sims):
    svc = service(sims)
    first = await svc.search(OfferFilters(gpu_model=GPU))
    assert not first.stale_providers
    svc.deadlines = {"vast_ai": 0.3}
    sims["vast_ai"].control.fault("offers", "timeout", seconds=3)
    second = await svc.search(OfferFilters(gpu_model=GPU))
    assert second.stale_providers == {"vast_ai"} and "deadline" in second.errors["vast_ai"]
    stale = [p for p in second.offers if p.provider == "vast_ai"]
    assert stale and all(p.stale for p in stale)
    assert all(not p.stale for p in second.offers if p.provider == "runpod")
    await svc.aclose()


async def test_capacity_at_preferred_provider_goes_to_the_other_within_two_attempts(sims):
    svc = service(sims)
    sims["vast_ai"].control.fault("create", "capacity", count=-1)
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-cap2"), preferred_providers=["vast_ai", "runpod"]
    )
    assert [a.outcome for a in result.attempts] == ["capacity", "created"]
    assert [a.provider for a in result.attempts] == ["vast_ai", "runpod"]
    assert len(_live(sims["runpod"], "gco-cap2")) == 1
    await svc.aclose()


async def test_three_503s_back_off_then_fail_over(sims):
    sleeps = Sleeps()
    svc = service(
        sims, sleeps=sleeps, policy=RetryPolicy(timeout=2, max_attempts=3, base_delay=0.2)
    )
    sims["vast_ai"].control.fault("create", "status", status=503, count=3)
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-503"), preferred_providers=["vast_ai", "runpod"]
    )
    assert sims["vast_ai"].control.stats()["create"] == 3
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4  # exponential
    assert result.instance.provider == "runpod"
    assert [a.outcome for a in result.attempts] == ["retryable", "created"]
    assert _live(sims["vast_ai"], "gco-503") == []
    await svc.aclose()


async def test_auth_error_blocks_the_provider_until_reset(sims):
    clock = Clock()
    svc = service(sims, clock=clock)
    sims["vast_ai"].control.fault("create", "auth", count=1)
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-auth1"), preferred_providers=["vast_ai", "runpod"]
    )
    assert result.instance.provider == "runpod"
    assert svc.breakers["vast_ai"].state == BreakerState.BLOCKED
    clock.now += 3600  # time alone does not unblock
    before = sims["vast_ai"].control.stats().get("create", 0)
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-auth2"), preferred_providers=["vast_ai", "runpod"]
    )
    assert result.instance.provider == "runpod"
    assert sims["vast_ai"].control.stats().get("create", 0) == before  # not even asked
    svc.breakers["vast_ai"].reset()  # the operator fixed the key
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-auth3"), preferred_providers=["vast_ai", "runpod"]
    )
    assert result.instance.provider == "vast_ai"
    await svc.aclose()


async def test_breaker_opens_then_half_opens_with_one_probe(sims):
    clock = Clock()
    svc = service(
        sims, ("vast_ai",), clock=clock, threshold=3, policy=RetryPolicy(timeout=2, max_attempts=1)
    )
    breaker = svc.breakers["vast_ai"]
    sims["vast_ai"].control.fault("offers", "status", status=502, count=3)
    for _ in range(3):
        await svc.search(OfferFilters(gpu_model=GPU))
    assert breaker.state == BreakerState.OPEN
    calls = sims["vast_ai"].control.stats()["offers"]
    skipped = await svc.search(OfferFilters(gpu_model=GPU))
    assert skipped.skipped == {"vast_ai"} and sims["vast_ai"].control.stats()["offers"] == calls
    clock.now += breaker.reset_after
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.probe_in_flight = False
    probe = await svc.search(OfferFilters(gpu_model=GPU))  # the probe succeeds
    assert probe.offers and breaker.state == BreakerState.CLOSED
    # a failed probe opens it again
    sims["vast_ai"].control.fault("offers", "status", status=502, count=4)
    for _ in range(3):
        await svc.search(OfferFilters(gpu_model=GPU))
    clock.now += breaker.reset_after
    await svc.search(OfferFilters(gpu_model=GPU))
    assert breaker.state == BreakerState.OPEN
    await svc.aclose()


async def test_lost_answer_creates_exactly_one_instance(sims):
    svc = service(sims)
    sims["vast_ai"].control.fault("create", "lost_answer")
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-lost-once"), preferred_providers=["vast_ai", "runpod"]
    )
    assert [a.outcome for a in result.attempts] == ["ambiguous", "adopted"]
    live = _live(sims["vast_ai"], "gco-lost-once")
    assert len(live) == 1 and str(live[0]["id"]) == result.instance.instance_id
    assert _live(sims["runpod"], "gco-lost-once") == []
    assert sims["vast_ai"].control.stats()["create"] == 1  # never re-sent
    await svc.aclose()


async def test_lost_answer_and_failed_listing_never_duplicates(sims):
    svc = service(sims, policy=RetryPolicy(timeout=2, max_attempts=1))
    sims["vast_ai"].control.fault("create", "lost_answer")
    sims["vast_ai"].control.fault("list", "status", status=503, count=-1)
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="gco-lost-unresolved"), preferred_providers=["vast_ai"]
    )
    # Vast was left out after the unresolved listing: no second create there
    assert sims["vast_ai"].control.stats()["create"] == 1
    assert result.instance.provider == "runpod"
    await svc.aclose()


async def test_price_cap_is_never_exceeded(sims):
    svc = service(sims)
    found = await svc.search(OfferFilters(gpu_model=GPU, gpu_count=1))
    cheapest = min(p.our_price_per_gpu_hour for p in found.offers)
    with pytest.raises(NoOfferError):
        await svc.create_instance_with_failover(
            GPU, InstanceConfig(label="x"), max_price=cheapest - 1
        )
    result = await svc.create_instance_with_failover(
        GPU, InstanceConfig(label="y"), max_price=cheapest
    )
    assert result.offer.our_price_per_gpu_hour <= cheapest
    await svc.aclose()


async def _outage_calls(sims, *, retries: bool) -> int:
    for sim in sims.values():
        sim.control.reset(offers=4000, seed=11)
    sims["vast_ai"].control.fault("*", "status", status=503, count=-1)
    svc = service(
        sims,
        policy=RetryPolicy(timeout=5, max_attempts=3 if retries else 1),
        budget_ratio=0.1 if retries else 0,
        threshold=5 if retries else 10**9,
    )
    found = await svc.search(OfferFilters(gpu_model=GPU))  # Vast is down: RunPod answers
    runpod_offer = next(p for p in found.offers if p.provider == "runpod")
    vast_offer = runpod_offer.__class__(
        offer=runpod_offer.offer.__class__(
            **{**runpod_offer.offer.__dict__, "provider": "vast_ai", "offer_id": "18000001"}
        ),
        markup_percent=25,
        our_price_per_gpu_hour=runpod_offer.our_price_per_gpu_hour - 1,
    )
    for sim in sims.values():
        sim.control.reset(offers=4000, seed=11)
    sims["vast_ai"].control.fault("*", "status", status=503, count=-1)
    results = await asyncio.gather(
        *(
            svc.create_instance_with_failover(
                GPU, InstanceConfig(label=f"gco-outage-{i}"), offers=[vast_offer, runpod_offer]
            )
            for i in range(100)
        )
    )
    assert {r.instance.provider for r in results} == {"runpod"}
    await svc.aclose()
    return sum(
        sum(v for k, v in sim.control.stats().items() if k != "total") for sim in sims.values()
    )


async def test_full_outage_of_one_provider_costs_at_most_10_percent_more_calls(sims):
    baseline = await _outage_calls(sims, retries=False)
    with_retries = await _outage_calls(sims, retries=True)
    assert baseline >= 200  # 100 failed creates at Vast + 100 creates at RunPod
    assert with_retries <= 1.1 * baseline, (with_retries, baseline)
