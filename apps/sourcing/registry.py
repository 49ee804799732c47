"""The configured providers as adapters, with one circuit breaker and one retry budget per
provider for the whole process, and their health published to the cache for operators
(every web process and worker reads the same picture)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache

from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import RetryBudget, RetryPolicy
from apps.sourcing.breaker import BreakerState, CircuitBreaker
from apps.sourcing.models import LaunchStat
from apps.sourcing.multi import MultiProviderService
from apps.sourcing.ranking import LaunchHistory

HEALTH_KEY = "sourcing:health:{}"
BLOCKED_KEY = "sourcing:blocked:{}"
_breakers: dict[str, CircuitBreaker] = {}
_budgets: dict[str, RetryBudget] = {}
_last_known: dict[str, Any] = {}


def configured_providers() -> list[str]:
    return [
        name
        for name, conf in settings.SOURCING_PROVIDERS.items()
        if conf.get("api_key") and name in ADAPTERS
    ]


def _publish(breaker: CircuitBreaker) -> None:
    cache.set(HEALTH_KEY.format(breaker.provider), breaker.snapshot(), None)
    if breaker.state == BreakerState.BLOCKED:
        cache.set(BLOCKED_KEY.format(breaker.provider), breaker.reason, None)


def breaker_for(name: str) -> CircuitBreaker:
    breaker = _breakers.get(name)
    if breaker is None:
        breaker = CircuitBreaker(provider=name, on_change=_publish)
        _breakers[name] = breaker
    # A block set by another process (or before a restart) holds until an operator resets it.
    reason = cache.get(BLOCKED_KEY.format(name))
    if reason is not None and breaker.state != BreakerState.BLOCKED:
        breaker.block(str(reason))
    return breaker


def breaker_reset(name: str) -> None:
    """The operator fixed the key or the account: use the provider again."""
    cache.delete(BLOCKED_KEY.format(name))
    breaker_for(name).reset()
    _publish(_breakers[name])


def publish_health() -> None:
    for name in configured_providers():
        _publish(breaker_for(name))


def health() -> list[dict[str, Any]]:
    out = []
    for name in configured_providers():
        snap = cache.get(HEALTH_KEY.format(name)) or breaker_for(name).snapshot()
        out.append(snap)
    return out


def launch_history() -> dict[tuple[str, str], LaunchHistory]:
    return {
        (s.provider, s.gpu_model): LaunchHistory(attempts=s.attempts, successes=s.successes)
        for s in LaunchStat.objects.all()
    }


def make_service(providers: list[str] | None = None) -> MultiProviderService:
    """A service over the configured providers. Adapters hold an httpx client bound to the
    event loop that will use them: build one per `asyncio.run`. Reads the launch history
    (a database read) here, before any event loop."""
    names = [n for n in (providers or configured_providers()) if n in configured_providers()]
    policy = RetryPolicy(timeout=settings.SOURCING_HTTP_TIMEOUT_S)
    adapters = {}
    for name in names:
        conf = settings.SOURCING_PROVIDERS[name]
        budget = _budgets.setdefault(name, RetryBudget())
        adapters[name] = ADAPTERS[name](
            base_url=conf["base_url"], api_key=conf["api_key"], policy=policy, budget=budget
        )
    return MultiProviderService(
        adapters,
        breakers={n: breaker_for(n) for n in names},
        deadline=settings.SOURCING_SEARCH_DEADLINE_S,
        markup_percent=settings.SOURCING_MARKUP_PERCENT,
        markup_overrides=settings.SOURCING_MARKUP_OVERRIDES,
        history=launch_history(),
        last_known=_last_known,
    )
