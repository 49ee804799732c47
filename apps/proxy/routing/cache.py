"""A small TTL cache for the routing reads, and how they reach the database: in a worker
thread, the connection handed back after each read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)
T = TypeVar("T")


def db_call(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run a sync ORM read off the event loop and hand its connection back afterwards (outside
    a request nothing else would)."""

    def run(*args: Any) -> T:
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=True)


@dataclass
class _Cached:
    value: Any
    expires_at: float


class TtlCache:
    """A small TTL cache that never makes a request wait for a refresh: an expired entry is
    served while one background load replaces it (stale-while-revalidate). Only a key never
    seen waits, and concurrent misses for it share a single load."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[Any, _Cached] = {}
        self._loading: dict[tuple[int, Any], asyncio.Future[Any]] = {}

    def clear(self) -> None:
        self._items.clear()

    def put(self, key: Any, value: Any, ttl: float) -> None:
        self._items[key] = _Cached(value, time.monotonic() + ttl)

    async def get(self, key: Any, ttl: float, load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._items.get(key)
        if hit is not None:
            now = self._clock()
            if hit.expires_at > now:
                return hit.value
            # Stale is served, while one background load replaces it, for a bounded time only:
            # at most one more TTL and at most PROXY_ROUTE_MAX_STALE_S past expiry. Older than
            # that the request waits for a fresh read, so a revoked key or a drained replica is
            # never used on a view of unbounded age.
            if now < hit.expires_at + min(ttl, settings.PROXY_ROUTE_MAX_STALE_S):
                self._refresh(key, ttl, load)
                return hit.value
        return await self._load(key, ttl, load)

    def _refresh(self, key: Any, ttl: float, load: Callable[[], Awaitable[Any]]) -> None:
        loop = asyncio.get_running_loop()
        if (id(loop), key) in self._loading:
            return
        task = loop.create_task(self._load(key, ttl, load))
        task.add_done_callback(_log_refresh_failure)

    async def _load(self, key: Any, ttl: float, load: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        flight_key = (id(loop), key)
        pending = self._loading.get(flight_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = loop.create_future()
        self._loading[flight_key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            future.set_result(value)
            now = self._clock()
            self._items[key] = _Cached(value, now + ttl)
            if len(self._items) > 50_000:  # bounded: drop what has expired
                self._items = {k: v for k, v in self._items.items() if v.expires_at > now}
            return value
        finally:
            self._loading.pop(flight_key, None)


def _log_refresh_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("proxy: background route refresh failed: %s", task.exception())


_TtlCache = TtlCache  # the name the tests and older callers know
