"""The route cache never makes a request wait for a refresh once a key has been seen, and never
serves what it read more than 2 x TTL ago."""

import asyncio

import pytest

from apps.proxy.routing import _TtlCache
from tests.support import wait_for_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_expired_entry_is_served_while_one_background_load_replaces_it():
    clock = Clock()
    cache = _TtlCache(clock)
    loads = []
    gate = asyncio.Event()

    async def load():
        loads.append(len(loads))
        if len(loads) > 1:
            await gate.wait()  # the refresh is slow
        return len(loads)

    assert await cache.get("k", 1.0, load) == 1  # first sight waits for the load
    clock.now += 1.5
    # Expired, by less than one more TTL: served stale at once, and one refresh for many.
    assert await asyncio.gather(*(cache.get("k", 1.0, load) for _ in range(5))) == [1] * 5
    assert len(loads) == 2
    gate.set()

    # The refresh lands: its value is served from then on (stale until then, no new load).
    async def refreshed() -> bool:
        return await cache.get("k", 1.0, load) == 2

    await wait_for_async(refreshed, "the refreshed value", timeout=10)
    assert len(loads) == 2


@pytest.mark.asyncio
async def test_an_entry_stale_by_more_than_one_ttl_is_not_served():
    clock = Clock()
    cache = _TtlCache(clock)
    values = iter(["revoked-later", "fresh"])

    async def load():
        return next(values)

    assert await cache.get("k", 1.0, load) == "revoked-later"
    clock.now += 2.01  # idle past 2 x TTL: the next request waits for a new read

    assert await cache.get("k", 1.0, load) == "fresh"


@pytest.mark.asyncio
async def test_concurrent_first_sights_share_one_load():
    cache = _TtlCache()
    loads = 0

    async def load():
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return "value"

    assert await asyncio.gather(*(cache.get("k", 60.0, load) for _ in range(10))) == ["value"] * 10
    assert loads == 1
