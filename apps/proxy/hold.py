"""Scale from zero (issue 14): a request for a deployment with no READY replica is held, not
refused. It takes a place in the deployment's queue (`max_queue` over every web process; the
one past it is refused at once), wakes the autoscaler (which starts a replica and probes it
until it answers), and waits — at most `queue_timeout_s` — for a replica to turn READY. Then it
goes through like any other request, streaming included. Past the bound: 503 with
`Retry-After`, in OpenAI's error shape.

One watcher per deployment and event loop does the waiting for all its held requests: it
re-reads the deployment's replicas every PROXY_HOLD_POLL_S (one database read however many
requests wait), wakes the autoscaler every WAKE_EVERY_S, and hands the fresh route to every
waiter (and to the router's cache) the moment one replica is READY.

Each held request that is served records a cold start: held time and time to the first byte
of its answer (`ColdStart`, written in batches off the request path)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from apps.catalog.models import ColdStart, Deployment
from apps.catalog.services import autoscale
from apps.proxy.load import publisher
from apps.proxy.routing import (
    DeploymentRoute,
    KeyIdentity,
    NoReadyReplicaError,
    ProxyError,
    TtlCache,
    db_call,
    load_owner_routes,
    router,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

WAKE_EVERY_S = 1.0
SETTINGS_TTL_S = 5.0


class QueueFullError(ProxyError):
    status = 503
    type = "server_error"
    code = "queue_full"


class ColdStartTimeoutError(ProxyError):
    status = 503
    type = "server_error"
    code = "no_ready_replica"


@dataclass(frozen=True)
class HoldSettings:
    max_queue: int
    queue_timeout_s: int


def _load_hold_settings(deployment_id: uuid.UUID) -> HoldSettings | None:
    row = Deployment.objects.filter(pk=deployment_id).values("max_queue", "queue_timeout_s").first()
    return HoldSettings(**row) if row else None


def _in_thread(fn: Callable[..., T]) -> Callable[..., Any]:
    """Run a service in a worker thread of its own (not the thread the routing reads share)
    and close that thread's database connection afterwards."""

    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(run, thread_sensitive=False)


@dataclass
class Held:
    """A request that waited for a replica: when it arrived and how long it waited."""

    deployment_id: uuid.UUID
    arrived: float  # perf_counter
    arrived_at: datetime
    held_ms: float = 0.0


@dataclass
class _Watcher:
    route: DeploymentRoute
    done: asyncio.Future[DeploymentRoute]
    waiters: int = 0
    task: asyncio.Task[None] | None = field(default=None)


class Holder:
    """Held requests of this process. Use the module's `holder`."""

    def __init__(self) -> None:
        self._settings = TtlCache()
        self._watchers: dict[tuple[int, uuid.UUID], _Watcher] = {}

    async def hold_settings(self, deployment_id: uuid.UUID) -> HoldSettings | None:
        return await self._settings.get(
            ("hold", deployment_id),
            SETTINGS_TTL_S,
            lambda: db_call(_load_hold_settings)(deployment_id),
        )

    async def resolve(
        self, identity: KeyIdentity, *, capability: str, model: str | None
    ) -> tuple[DeploymentRoute, Held | None]:
        """`router.resolve`, except that a live deployment with no READY replica holds the
        request until it has one (see the module's docstring)."""
        publisher.ensure_running()
        try:
            return await router.resolve(identity, capability=capability, model=model), None
        except NoReadyReplicaError:
            pass
        route = await router.deployment_route(identity)
        return await self.wait_for_replica(route)

    async def wait_for_replica(self, route: DeploymentRoute) -> tuple[DeploymentRoute, Held]:
        """Hold until `route` has a READY replica: the fresh route, and how long it took."""
        publisher.ensure_running()
        held = Held(deployment_id=route.id, arrived=time.perf_counter(), arrived_at=timezone.now())
        limits = await self.hold_settings(route.id)
        if limits is None:
            raise NoReadyReplicaError(f"The deployment '{route.model_name}' no longer exists.")
        retry_after = max(1, min(30, limits.queue_timeout_s))
        entered = await publisher.queue_enter(
            route.id, max_queue=limits.max_queue, ttl_s=limits.queue_timeout_s + 10
        )
        if not entered:
            raise QueueFullError(
                f"'{route.model_name}' is starting and already has {limits.max_queue} requests "
                "waiting for it; retry shortly.",
                retry_after=retry_after,
            )
        publisher.hold(route.id, +1)
        try:
            await publisher.publish(force=True)  # the autoscaler must see it before it wakes
        except Exception as exc:  # Redis down: the wake still scales up to min 1 below
            logger.error("proxy hold: could not publish the held request: %s", exc)
        watcher = self._watcher(route)
        watcher.waiters += 1
        try:
            fresh = await asyncio.wait_for(
                asyncio.shield(watcher.done), timeout=limits.queue_timeout_s
            )
        except TimeoutError as exc:
            raise ColdStartTimeoutError(
                f"No replica of '{route.model_name}' became ready within "
                f"{limits.queue_timeout_s} s; retry shortly.",
                retry_after=retry_after,
            ) from exc
        finally:
            watcher.waiters -= 1
            publisher.hold(route.id, -1)
            await publisher.queue_leave(route.id)
            if watcher.waiters <= 0 and watcher.task is not None and not watcher.done.done():
                watcher.task.cancel()
        held.held_ms = (time.perf_counter() - held.arrived) * 1000
        return fresh, held

    def _watcher(self, route: DeploymentRoute) -> _Watcher:
        loop = asyncio.get_running_loop()
        key = (id(loop), route.id)
        watcher = self._watchers.get(key)
        if watcher is None or watcher.done.done() or (watcher.task and watcher.task.done()):
            watcher = _Watcher(route=route, done=loop.create_future())
            watcher.task = loop.create_task(self._watch(key, watcher))
            self._watchers[key] = watcher
        return watcher

    async def _watch(self, key: tuple[int, uuid.UUID], watcher: _Watcher) -> None:
        route = watcher.route
        wake = _in_thread(autoscale.deployment_wake)
        last_wake = 0.0
        waking: asyncio.Task[Any] | None = None
        try:
            while not watcher.done.done():
                now = time.monotonic()
                if now - last_wake >= WAKE_EVERY_S and (waking is None or waking.done()):
                    last_wake = now
                    waking = asyncio.get_running_loop().create_task(wake(deployment_id=route.id))
                    waking.add_done_callback(_log_wake_failure)
                routes = await db_call(load_owner_routes)(route.owner_id)
                fresh = next((r for r in routes if r.id == route.id), None)
                if fresh is None:
                    watcher.done.set_exception(
                        NoReadyReplicaError(f"The deployment '{route.model_name}' was stopped.")
                    )
                    break
                if fresh.routable:
                    router.remember_owner_routes(route.owner_id, routes)
                    watcher.done.set_result(fresh)
                    break
                await asyncio.sleep(settings.PROXY_HOLD_POLL_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database error: the waiters get it, not a hang
            logger.exception("proxy hold: watching %s failed", route.id)
            if not watcher.done.done():
                watcher.done.set_exception(
                    NoReadyReplicaError(f"Could not wait for '{route.model_name}': {exc}")
                )
        finally:
            if watcher.done.done() and not watcher.done.cancelled():
                watcher.done.exception()  # retrieved: no warning when nobody waits any more
            if self._watchers.get(key) is watcher:
                self._watchers.pop(key, None)


def _log_wake_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("proxy hold: waking the autoscaler failed: %s", task.exception())


holder = Holder()


# --- cold starts: recorded off the request path ---------------------------------------------


@dataclass
class ColdStartEntry:
    deployment_id: uuid.UUID
    at: datetime
    endpoint: str
    held_ms: float
    first_byte_ms: float | None


def _write_cold_starts(entries: list[ColdStartEntry]) -> None:
    ColdStart.objects.bulk_create(
        [
            ColdStart(
                deployment_id=e.deployment_id,
                at=e.at,
                endpoint=e.endpoint[:40],
                held_ms=e.held_ms,
                first_byte_ms=e.first_byte_ms,
            )
            for e in entries
        ]
    )


class ColdStartLog:
    """Cold starts collected in memory and written in one INSERT per half second."""

    def __init__(self) -> None:
        self._entries: list[ColdStartEntry] = []
        self._flushing: dict[int, asyncio.Task[None]] = {}

    def record(self, entry: ColdStartEntry) -> None:
        self._entries.append(entry)
        loop = asyncio.get_running_loop()
        task = self._flushing.get(id(loop))
        if task is None or task.done():
            self._flushing[id(loop)] = loop.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0.5)
        await self.flush()

    async def flush(self) -> int:
        entries, self._entries = self._entries, []
        if entries:
            try:
                await db_call(_write_cold_starts)(entries)
            except Exception:
                logger.exception("proxy: could not write %d cold starts", len(entries))
                return 0
        return len(entries)

    def take(self) -> list[ColdStartEntry]:
        entries, self._entries = self._entries, []
        return entries


cold_starts = ColdStartLog()


def record_cold_start(held: Held, *, endpoint: str) -> None:
    cold_starts.record(
        ColdStartEntry(
            deployment_id=held.deployment_id,
            at=held.arrived_at,
            endpoint=endpoint,
            held_ms=round(held.held_ms, 2),
            first_byte_ms=round((time.perf_counter() - held.arrived) * 1000, 2),
        )
    )
