"""The route cache never makes a request wait for a refresh once a key has been seen."""

import asyncio

import pytest

from apps.proxy.routing import _TtlCache


@pytest.mark.asyncio
async def test_expired_entry_is_served_while_one_background_load_replaces_it():
    cache = _TtlCache()
    loads = []
    gate = asyncio.Event()

    async def load():
        loads.append(len(loads))
        if len(loads) > 1:
            await gate.wait()  # the refresh is slow
        return len(loads)

    assert await cache.get("k", 0.0, load) == 1  # first sight waits for the load
    # Expired (ttl 0): served stale at once, and only one refresh starts for many requests.
    assert await asyncio.gather(*(cache.get("k", 0.0, load) for _ in range(5))) == [1] * 5
    assert len(loads) == 2
    gate.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert await cache.get("k", 60.0, load) == 2


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
