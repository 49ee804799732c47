"""Counts kept in this process and shared through Redis in the background, so that no request
waits on a Redis round trip: `LoopSync` (the one helper for "a Redis client per event loop and
a periodic sync task") and `SharedCounters` (per-window request counts: the rate limits)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class LoopSync:
    """Runs `job` every `interval()` seconds on each event loop that calls `ensure_running`,
    and hands out a Redis client of the running loop (a redis.asyncio client belongs to the
    loop that made it). A job that fails on Redis (RedisError, OSError) is logged as `what`,
    its loop's client is dropped (the next call connects anew), and it runs again next time."""

    def __init__(
        self, what: str, interval: Callable[[], float], job: Callable[[], Awaitable[None]]
    ) -> None:
        self.what = what
        self._interval = interval
        self._job = job
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._clients: dict[int, Any] = {}

    def ensure_running(self) -> None:
        """Start the periodic job on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        task = self._tasks.get(id(loop))
        if task is None or task.done():
            self._tasks[id(loop)] = loop.create_task(self._run())

    def client(self) -> Any:
        """The Redis client of the running loop (REDIS_URL must be set)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = self._clients[loop_id] = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
            )
        return client

    def drop_client(self) -> None:
        self._clients.pop(id(asyncio.get_running_loop()), None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            try:
                await self._job()
            except (RedisError, OSError) as exc:
                logger.error("%s: Redis unavailable: %s", self.what, exc)
                self.drop_client()


class SharedCounters:
    """Per-window request counters: counted in this process at once, summed across processes
    through Redis in the background (INCRBY of what was counted since the last sync)."""

    def __init__(self) -> None:
        self._unsynced: dict[str, int] = {}
        self._known: dict[str, int] = {}  # the shared count as of the last sync
        self._sync = LoopSync(
            "proxy rate limiter", lambda: settings.PROXY_RATE_SYNC_S, self._sync_if_counted
        )

    def hit(self, key: str) -> int:
        """Count one; the count as this process knows it now."""
        count = self._unsynced[key] = self._unsynced.get(key, 0) + 1
        if settings.REDIS_URL:
            self._sync.ensure_running()
        return self._known.get(key, 0) + count

    async def _sync_if_counted(self) -> None:
        if self._unsynced:
            await self.sync()

    def _count_locally(self, pending: dict[str, int]) -> None:
        for key, n in pending.items():
            self._known[key] = self._known.get(key, 0) + n

    async def sync(self) -> None:
        """Add this process's new counts to Redis and learn the totals. Redis down: the
        counts stay this process's (requests go through on the local counts)."""
        pending, self._unsynced = self._unsynced, {}
        if len(self._known) > 10_000:
            self._known = {}
        if not settings.REDIS_URL:
            self._count_locally(pending)
            return
        keys = list(pending)
        try:
            pipe = self._sync.client().pipeline(transaction=False)
            for key in keys:
                pipe.incrby(key, pending[key])
                pipe.expire(key, 61, nx=True)
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.error("proxy rate limiter: Redis unavailable, counting locally: %s", exc)
            self._sync.drop_client()
            self._count_locally(pending)
            return
        for key, total in zip(keys, results[0::2], strict=True):
            self._known[key] = int(total)
