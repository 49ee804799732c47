"""A rotated deployment key stops working in every web process within 2 x PROXY_ROUTE_CACHE_S,
even in one that served it a moment before and has seen no request since. Two `Router`s are two
web processes: each has its own caches, and only the database is shared."""

import time

import pytest

from apps.proxy.routing import InvalidKeyError, Router
from tests.factories import make_deployment

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_rotated_key_is_refused_everywhere_within_two_ttls(user, settings):
    from asgiref.sync import sync_to_async

    from apps.catalog.services.deploy import deployment_key_rotate

    settings.PROXY_ROUTE_CACHE_S = ttl = 0.3
    deployment, old_key = await sync_to_async(make_deployment)(
        user, backends=["http://127.0.0.1:9"]
    )
    processes = [Router(), Router()]
    for process in processes:
        assert (await process.authenticate(old_key)).deployment_id == deployment.pk

    await sync_to_async(deployment_key_rotate)(deployment=deployment)
    revoked_at = time.monotonic()
    # The documented bound: wait it out (a minimum, not a race), then ask each process once.
    while time.monotonic() < revoked_at + 2 * ttl:
        time.sleep(0.05)

    for process in processes:
        with pytest.raises(InvalidKeyError):
            await process.authenticate(old_key)
