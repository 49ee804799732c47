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
