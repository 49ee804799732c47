"""The three simulators, served over real HTTP for the whole session and reset before each
test through their control API."""

from collections.abc import Iterator

import pytest

from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import ProviderAdapter, RetryBudget, RetryPolicy
from apps.sourcing.simulators import SIMULATORS, RunningSimulator

PROVIDERS = tuple(SIMULATORS)


@pytest.fixture(scope="session")
def simulators() -> Iterator[dict[str, RunningSimulator]]:
    running = {
        name: RunningSimulator(cls(offers=60, boot_seconds=0.2, drift_seconds=0))
        for name, cls in SIMULATORS.items()
    }
    yield running
    for sim in running.values():
        sim.stop()


@pytest.fixture
def sims(simulators: dict[str, RunningSimulator]) -> dict[str, RunningSimulator]:
    for sim in simulators.values():
        sim.control.reset(offers=60, seed=7)
        sim.control.configure(boot_seconds=0.2, run_startup_scripts=True, launch_interval=0)
    return simulators


class Sleeps(list[float]):
    """Records the backoff delays instead of sleeping them (tests drive time)."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_adapter(
    sim: RunningSimulator,
    name: str,
    *,
    api_key: str | None = None,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    sleeps: Sleeps | None = None,
) -> ProviderAdapter:
    return ADAPTERS[name](
        base_url=sim.url,
        api_key=api_key or sim.api_key,
        policy=policy or RetryPolicy(timeout=2.0),
        budget=budget,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


@pytest.fixture
def sourcing(settings, sims):
    """Settings pointing the clients at the simulators, flags on, and a clean process-wide
    breaker/budget registry."""
    from django.core.cache import cache

    from apps.sourcing import registry

    registry._breakers.clear()
    registry._budgets.clear()
    registry._last_known.clear()
    cache.clear()
    settings.SOURCING_PROVIDERS = {
        name: {"base_url": sim.url, "api_key": sim.api_key} for name, sim in sims.items()
    }
    settings.SOURCING_ENABLED = True
    settings.AUTO_PROVISIONING_ENABLED = True
    settings.SOURCING_HTTP_TIMEOUT_S = 3.0
    settings.SOURCING_SEARCH_DEADLINE_S = 3.0
    settings.SOURCING_AGENT_BOOTSTRAP = "echo {token} > token.txt; sleep 120"
    yield sims
    registry._breakers.clear()
    registry._budgets.clear()
