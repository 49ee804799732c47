"""MultiProviderService (DESIGN.md §7): one search across every provider at once, with a
deadline per provider, and a create that fails over from offer to offer and provider to
provider without ever leaving a duplicate instance behind.

Pure asyncio: no database here. Callers pass the launch history and persist what comes
back (apps.sourcing.services)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from apps.sourcing.adapters.base import (
    AccountError,
    AmbiguousCreateError,
    CapacityError,
    CredentialsError,
    FatalError,
    Instance,
    InstanceConfig,
    Offer,
    OfferFilters,
    ProviderAdapter,
    ProviderError,
    RetryableError,
)
from apps.sourcing.breaker import CircuitBreaker
from apps.sourcing.ranking import LaunchHistory, PricedOffer, Strategy, price, rank


@dataclass
class SearchResult:
    offers: list[PricedOffer]
    stale_providers: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # breaker open or blocked
    seconds: float = 0.0


@dataclass(frozen=True)
class Attempt:
    provider: str
    offer_id: str
    outcome: str  # created, adopted, capacity, retryable, ambiguous, account, fatal, skipped
    detail: str = ""


@dataclass
class FailoverResult:
    instance: Instance
    offer: PricedOffer
    attempts: list[Attempt]
    seconds: float


class NoOfferError(Exception):
    """No provider could give us an instance; `attempts` says what each said."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


class MultiProviderService:
    def __init__(
        self,
        adapters: Mapping[str, ProviderAdapter],
        *,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        deadline: float = 3.0,
        deadlines: Mapping[str, float] | None = None,
        markup_percent: int = 25,
        markup_overrides: Mapping[str, int] | None = None,
        history: Mapping[tuple[str, str], LaunchHistory] | None = None,
        last_known: dict[str, tuple[float, list[Offer]]] | None = None,
    ) -> None:
        self.adapters = dict(adapters)
        self.breakers = dict(breakers or {})
        for name in self.adapters:
            self.breakers.setdefault(name, CircuitBreaker(provider=name))
        self.deadline = deadline
        self.deadlines = dict(deadlines or {})
        self.markup_percent = markup_percent
        self.markup_overrides = dict(markup_overrides or {})
        self.history = dict(history or {})
        # provider → (when, offers) of its last answer, served (marked stale) when it is slow
        self.last_known = last_known if last_known is not None else {}

    async def aclose(self) -> None:
        await asyncio.gather(*(a.aclose() for a in self.adapters.values()))

    def priced(
        self, offers: Sequence[Offer], *, stale: bool = False, age: float = 0.0
    ) -> list[PricedOffer]:
        return price(
            offers,
            default=self.markup_percent,
            overrides=self.markup_overrides,
            stale=stale,
            age_seconds=age,
        )

    # --- search ---

    async def _search_one(self, name: str, filters: OfferFilters) -> list[Offer]:
        adapter, breaker = self.adapters[name], self.breakers[name]
        started = time.monotonic()
        try:
            offers = await asyncio.wait_for(
                adapter.list_offers(filters), self.deadlines.get(name, self.deadline)
            )
        except TimeoutError:
            breaker.record(latency=time.monotonic() - started, error_class="deadline")
            raise
        except ProviderError as exc:
            breaker.record(latency=time.monotonic() - started, error_class=exc.error_class.value)
            self._judge(breaker, exc)
            raise
        breaker.record(latency=time.monotonic() - started)
        breaker.record_success()
        self.last_known[name] = (time.time(), offers)
        return offers

    async def search(
        self,
        filters: OfferFilters,
        strategy: Strategy = Strategy.LOWEST_PRICE,
        providers: Sequence[str] | None = None,
    ) -> SearchResult:
        """All providers at once; each gets its own deadline, so the answer takes as long as
        the slowest provider's deadline, not the sum. A provider that misses it contributes
        its last known offers, marked stale."""
        started = time.monotonic()
        result = SearchResult(offers=[])
        names = [n for n in (providers or self.adapters) if n in self.adapters]
        asked = []
        for name in names:
            if self.breakers[name].allow():
                asked.append(name)
            else:
                result.skipped.add(name)
        answers = await asyncio.gather(
            *(self._search_one(name, filters) for name in asked), return_exceptions=True
        )
        priced: list[PricedOffer] = []
        for name, answer in zip(asked, answers, strict=True):
            if isinstance(answer, BaseException):
                result.errors[name] = (
                    "deadline exceeded" if isinstance(answer, TimeoutError) else str(answer)
                )
                if name in self.last_known:
                    when, offers = self.last_known[name]
                    result.stale_providers.add(name)
                    priced += self.priced(
                        [o for o in offers if _matches(o, filters)],
                        stale=True,
                        age=time.time() - when,
                    )
                continue
            priced += self.priced(answer)
        result.offers = rank(priced, strategy, self.history)
        result.seconds = time.monotonic() - started
        return result

    # --- create with failover ---

    def _judge(self, breaker: CircuitBreaker, exc: ProviderError) -> None:
        if isinstance(exc, CredentialsError | AccountError):
            breaker.block(f"{exc.__class__.__name__}: {exc}")
        elif isinstance(exc, RetryableError | FatalError):
            breaker.record_failure(str(exc))

    async def create_instance_with_failover(
        self,
        gpu_type: str,
        config: InstanceConfig,
        max_price: int | None = None,
        preferred_providers: Sequence[str] = (),
        *,
        gpu_count: int = 1,
        strategy: Strategy = Strategy.LOWEST_PRICE,
        offers: Sequence[PricedOffer] | None = None,
        max_attempts: int = 6,
    ) -> FailoverResult:
        """Walk the offers for `gpu_type` in strategy order (preferred providers first) and
        rent the first that works. `max_price` caps what we would charge per GPU-hour.

        Capacity errors fail over at once, to another provider first. A provider answering
        retryable errors (after the adapter's own backoff) or an error that says our account
        cannot use it is left for the rest of the walk. A create whose answer was lost is
        resolved by listing the provider's instances for our label: found → adopted; listing
        impossible → that provider is not asked again in this walk (no duplicate can be made),
        and reconciliation settles whatever the lost create left."""
        started = time.monotonic()
        if offers is None:
            found = await self.search(
                OfferFilters(gpu_model=gpu_type, gpu_count=gpu_count),
                strategy,
                preferred_providers or None,
            )
            if preferred_providers:
                others = [n for n in self.adapters if n not in preferred_providers]
                if others:
                    found.offers += (
                        await self.search(
                            OfferFilters(gpu_model=gpu_type, gpu_count=gpu_count), strategy, others
                        )
                    ).offers
            candidates = list(found.offers)
        else:
            candidates = list(offers)
        candidates = [
            p
            for p in candidates
            if p.offer.gpu_model == gpu_type
            and p.offer.gpu_count == gpu_count
            and p.provider in self.adapters
            and (max_price is None or p.our_price_per_gpu_hour <= max_price)
        ]
        candidates = rank(candidates, strategy, self.history)
        if preferred_providers:
            order = {name: i for i, name in enumerate(preferred_providers)}
            candidates.sort(key=lambda p: order.get(p.provider, len(order)))
        attempts: list[Attempt] = []
        left_out: set[str] = set()
        avoid: str | None = None  # after a capacity error, try another provider first
        tries = 0
        while candidates and tries < max_attempts:
            pick = next(
                (p for p in candidates if p.provider != avoid and p.provider not in left_out), None
            )
            if pick is None:
                pick = next((p for p in candidates if p.provider not in left_out), None)
            if pick is None:
                break
            candidates.remove(pick)
            name = pick.provider
            breaker = self.breakers[name]
            if not breaker.allow():
                attempts.append(Attempt(name, pick.offer.offer_id, "skipped", breaker.state.value))
                left_out.add(name)
                continue
            tries += 1
            adapter = self.adapters[name]
            t0 = time.monotonic()
            try:
                instance = await adapter.create_instance(pick.offer, config)
            except CapacityError as exc:
                breaker.record(latency=time.monotonic() - t0, error_class="capacity")
                breaker.record_success()  # the provider answered; it just has no machine
                attempts.append(Attempt(name, pick.offer.offer_id, "capacity", str(exc)))
                avoid = name
                continue
            except AmbiguousCreateError as exc:
                breaker.record(latency=time.monotonic() - t0, error_class="ambiguous")
                attempts.append(Attempt(name, pick.offer.offer_id, "ambiguous", str(exc)))
                try:
                    adopted = await adapter.find_by_label(config.label)
                except ProviderError as listing_error:
                    breaker.record_failure(str(listing_error))
                    attempts.append(Attempt(name, "", "unresolved", str(listing_error)))
                    left_out.add(name)
                    continue
                if adopted is not None:
                    breaker.record_success()
                    attempts.append(
                        Attempt(name, pick.offer.offer_id, "adopted", adopted.instance_id)
                    )
                    return FailoverResult(adopted, pick, attempts, time.monotonic() - started)
                breaker.record_failure(str(exc))  # nothing was created: safe to go on
                continue
            except ProviderError as exc:
                breaker.record(latency=time.monotonic() - t0, error_class=exc.error_class.value)
                self._judge(breaker, exc)
                attempts.append(Attempt(name, pick.offer.offer_id, exc.error_class.value, str(exc)))
                left_out.add(name)
                continue
            breaker.record(latency=time.monotonic() - t0)
            breaker.record_success()
            attempts.append(Attempt(name, pick.offer.offer_id, "created", instance.instance_id))
            return FailoverResult(instance, pick, attempts, time.monotonic() - started)
        raise NoOfferError(
            f"no provider could start {gpu_count}× {gpu_type}"
            + (f" at or under {max_price} µ$/GPU-h" if max_price is not None else ""),
            attempts,
        )


def _matches(offer: Offer, filters: OfferFilters) -> bool:
    if filters.gpu_model and offer.gpu_model != filters.gpu_model:
        return False
    if filters.gpu_count and offer.gpu_count != filters.gpu_count:
        return False
    return True
