"""Routing for everything that talks to deployments: the `/v1` HTTP proxy and the `/ws` voice
consumers. Async, in-process, and off the database on the hot path.

    from apps.proxy.routing import router, usage_buffer, UsageEntry, ProxyError

    identity = await router.authenticate(raw_key)            # sk_… → KeyIdentity, or 401
    route = await router.resolve(identity, capability="chat", model="my-model")  # 404 / 503
    await router.check_rate(route)                            # 429 with retry_after
    for replica in router.candidates(route):                  # least outstanding first
        async with router.lease(replica):                     # counts outstanding requests
            ...  # call replica.base_url; on a connect failure: router.mark_failed(replica, why)
    usage_buffer.record(UsageEntry(deployment_id=route.id, ...))   # flushed in batches

A voice session backed by several of the user's deployments picks each by capability:
`await router.resolve_for_owner(identity, capability="transcription")` (the key's own
deployment first when it has that capability, else the user's other live deployments).

What is cached, and for how long (PROXY_ROUTE_CACHE_S, default 2 s): a key's identity and a
deployment's READY replicas. An entry expired by less than one more TTL is still served while a
background read replaces it, so a key in steady use never waits on the database; an older one
is not served. So in every web process, a revoked key or a replica the health check took out of
service stops being used at most 2 x PROXY_ROUTE_CACHE_S (4 s by default) after the change.
Outstanding-request counts and the short quarantine of a replica that refused a connection
(PROXY_REPLICA_COOLDOWN_S) are per process.

Errors are `ProxyError`s carrying the HTTP status, OpenAI's error `type` and `code`, and for 429
the seconds to wait: the `/v1` views render them as OpenAI error bodies, the voice consumers as
close codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from apps.core import metrics
from apps.core.secrets import secret_digest

logger = logging.getLogger(__name__)

KEY_PREFIX = "sk_"
ROUTABLE_DEPLOYMENT_STATUSES = ("READY", "DEGRADED")
T = TypeVar("T")


# --- errors ------------------------------------------------------------------------------------


class ProxyError(Exception):
    """A request the proxy refuses; rendered as OpenAI's `{"error": {message, type, code}}`."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ProxyError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidKeyError(ProxyError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFoundError(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitedError(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NoReadyReplicaError(ProxyError):
    status = 503
    type = "server_error"
    code = "no_ready_replica"


class UpstreamError(ProxyError):
    status = 502
    type = "server_error"
    code = "upstream_error"


# --- what routing hands out ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyIdentity:
    """Who a deployment key belongs to."""

    key_id: uuid.UUID
    deployment_id: uuid.UUID
    owner_id: uuid.UUID


@dataclass(frozen=True)
class ReplicaRoute:
    """A READY replica: where to send requests (`base_url` + the OpenAI path, e.g.
    `http://10.0.0.5:8000` + `/v1/chat/completions`)."""

    replica_id: int
    deployment_id: uuid.UUID
    base_url: str


@dataclass(frozen=True)
class DeploymentRoute:
    """A deployment as the proxy sees it: its name, what it serves, its READY replicas."""

    id: uuid.UUID
    owner_id: uuid.UUID
    model_name: str
    capabilities: frozenset[str]
    status: str
    rate_limit_per_minute: int
    replicas: tuple[ReplicaRoute, ...]
    created: int = 0  # epoch seconds

    @property
    def routable(self) -> bool:
        return self.status in ROUTABLE_DEPLOYMENT_STATUSES and bool(self.replicas)


# --- database reads (run in a worker thread, cached) -------------------------------------------


def _db(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run a sync ORM read off the event loop and hand its connection back afterwards (outside
    a request nothing else would)."""

    def run(*args: Any) -> T:
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=True)


def _load_identity(digest: str) -> KeyIdentity | None:
    from apps.catalog.models import DeploymentKey

    row = (
        DeploymentKey.objects.filter(digest=digest, revoked_at__isnull=True)
        .exclude(deployment__status__in=("STOPPED", "FAILED"))
        .values("id", "deployment_id", "deployment__owner_id")
        .first()
    )
    if row is None:
        return None
    return KeyIdentity(
        key_id=row["id"], deployment_id=row["deployment_id"], owner_id=row["deployment__owner_id"]
    )


def _route_from(deployment: Any, replicas: Iterable[Any]) -> DeploymentRoute:
    return DeploymentRoute(
        id=deployment.id,
        owner_id=deployment.owner_id,
        model_name=deployment.model_name,
        capabilities=frozenset(deployment.capabilities or ()),
        status=deployment.status,
        rate_limit_per_minute=deployment.rate_limit_per_minute,
        replicas=tuple(
            ReplicaRoute(replica_id=r.id, deployment_id=deployment.id, base_url=r.base_url)
            for r in replicas
            if r.status == "READY" and r.base_url
        ),
        created=int(deployment.created_at.timestamp()),
    )


def _load_owner_routes(owner_id: uuid.UUID) -> list[DeploymentRoute]:
    from apps.catalog.models import Deployment, Replica

    deployments = list(
        Deployment.objects.filter(owner_id=owner_id)
        .exclude(status__in=("STOPPED", "FAILED"))
        .only(
            "id",
            "owner_id",
            "model_name",
            "capabilities",
            "status",
            "rate_limit_per_minute",
            "created_at",
        )
        .order_by("created_at")
    )
    by_deployment: dict[uuid.UUID, list[Any]] = {d.id: [] for d in deployments}
    for replica in Replica.objects.filter(
        deployment_id__in=list(by_deployment), status="READY"
    ).only("id", "deployment_id", "status", "base_url"):
        by_deployment[replica.deployment_id].append(replica)
    return [_route_from(d, by_deployment[d.id]) for d in deployments]


# --- the router ---------------------------------------------------------------------------------


@dataclass
class _Cached:
    value: Any
    expires_at: float


class _TtlCache:
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


class Router:
    """Process-wide routing state: caches, outstanding-request counts, quarantined replicas,
    rate-limit counters. Use the module's `router`."""

    def __init__(self) -> None:
        self._identities = _TtlCache()
        self._owners = _TtlCache()
        self.outstanding: dict[int, int] = {}
        self._down_until: dict[int, float] = {}
        self._rates = SharedCounters()

    @property
    def ttl(self) -> float:
        return float(settings.PROXY_ROUTE_CACHE_S)

    def invalidate(self) -> None:
        """Forget every cached key and route (the next request reads the database)."""
        self._identities.clear()
        self._owners.clear()
        self._down_until.clear()

    def remember_owner_routes(self, owner_id: uuid.UUID, routes: list[DeploymentRoute]) -> None:
        """Replace the cached routes of `owner_id` with a fresher read (a held request saw a
        replica turn READY: the requests after it need not wait for the cache to expire)."""
        self._owners.put(owner_id, routes, self.ttl)

    # --- who ---

    async def authenticate(self, raw_key: str | None) -> KeyIdentity:
        """The deployment key's identity, or InvalidKeyError (401). Revoked keys and keys of
        stopped deployments are refused."""
        if not raw_key or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
            raise InvalidKeyError(
                "Incorrect API key provided. Use a deployment key (sk_…) in "
                "'Authorization: Bearer' or 'X-API-Key'."
            )
        digest = secret_digest(raw_key)
        identity = await self._identities.get(digest, self.ttl, lambda: _db(_load_identity)(digest))
        if identity is None:
            raise InvalidKeyError("Incorrect API key provided.")
        return identity

    # --- where ---

    async def owner_routes(self, owner_id: uuid.UUID) -> list[DeploymentRoute]:
        """Every live (not stopped or failed) deployment of the user, oldest first."""
        return await self._owners.get(owner_id, self.ttl, lambda: _db(_load_owner_routes)(owner_id))

    async def deployment_route(self, identity: KeyIdentity) -> DeploymentRoute:
        """The key's own deployment (404 once it is gone)."""
        for route in await self.owner_routes(identity.owner_id):
            if route.id == identity.deployment_id:
                return route
        raise ModelNotFoundError("The deployment of this key no longer exists.")

    async def resolve(
        self, identity: KeyIdentity, *, capability: str, model: str | None = None
    ) -> DeploymentRoute:
        """The key's deployment, checked to serve `model` (when given) and `capability`:
        404 (ModelNotFoundError) if not, 503 (NoReadyReplicaError) if it has no READY
        replica."""
        route = await self.deployment_route(identity)
        if model is not None and model != route.model_name:
            raise ModelNotFoundError(
                f"The model '{model}' does not exist in this deployment; it serves "
                f"'{route.model_name}'.",
                param="model",
            )
        if capability not in route.capabilities:
            raise ModelNotFoundError(
                f"The model '{route.model_name}' does not support {capability}; it serves "
                f"{', '.join(sorted(route.capabilities)) or 'nothing'}.",
                param="model",
            )
        self._require_routable(route)
        return route

    async def resolve_for_owner(self, identity: KeyIdentity, *, capability: str) -> DeploymentRoute:
        """A deployment of the key's owner that serves `capability`: the key's own one if it
        does, else the user's oldest live one that does, READY ones first. 404 when the user
        has none, 503 when none of them has a READY replica."""
        routes = await self.owner_routes(identity.owner_id)
        serving = [r for r in routes if capability in r.capabilities]
        if not serving:
            raise ModelNotFoundError(f"You have no deployment that serves {capability}.")
        serving.sort(key=lambda r: (not r.routable, r.id != identity.deployment_id))
        self._require_routable(serving[0])
        return serving[0]

    def _require_routable(self, route: DeploymentRoute) -> None:
        if route.routable:
            return
        if route.status in ROUTABLE_DEPLOYMENT_STATUSES:
            raise NoReadyReplicaError(
                f"The deployment '{route.model_name}' has no ready replica right now."
            )
        raise NoReadyReplicaError(
            f"The deployment '{route.model_name}' is {route.status}, not ready to serve."
        )

    def candidates(self, route: DeploymentRoute) -> list[ReplicaRoute]:
        """The READY replicas to try, in order: fewest outstanding requests first (ties
        broken at random), replicas that just refused a connection left out. Empty raises
        NoReadyReplicaError."""
        now = time.monotonic()
        healthy = [r for r in route.replicas if self._down_until.get(r.replica_id, 0) <= now]
        if not healthy:
            raise NoReadyReplicaError(
                f"Every replica of '{route.model_name}' is failing right now; retry shortly.",
                retry_after=int(settings.PROXY_REPLICA_COOLDOWN_S) or 1,
            )
        # Least outstanding first; hash of time as a cheap tie-breaker spreads equal loads.
        spin = int(now * 1000)
        return sorted(
            healthy,
            key=lambda r: (self.outstanding.get(r.replica_id, 0), (r.replica_id ^ spin) & 0xFF),
        )

    def pick(self, route: DeploymentRoute) -> ReplicaRoute:
        """The READY replica with the fewest outstanding requests."""
        return self.candidates(route)[0]

    @asynccontextmanager
    async def lease(self, replica: ReplicaRoute) -> AsyncIterator[ReplicaRoute]:
        """Count one outstanding request on `replica` for the duration of the block."""
        rid = replica.replica_id
        self.outstanding[rid] = self.outstanding.get(rid, 0) + 1
        try:
            yield replica
        finally:
            left = self.outstanding.get(rid, 1) - 1
            if left > 0:
                self.outstanding[rid] = left
            else:
                self.outstanding.pop(rid, None)

    def mark_failed(self, replica: ReplicaRoute, reason: str) -> None:
        """`replica` refused a connection or dropped it before answering: send nothing more to
        it from this process for PROXY_REPLICA_COOLDOWN_S (the health check decides for
        good)."""
        self._down_until[replica.replica_id] = time.monotonic() + settings.PROXY_REPLICA_COOLDOWN_S
        logger.warning(
            "proxy: replica %s of %s failed (%s); cooling down",
            replica.replica_id,
            replica.deployment_id,
            reason,
        )

    # --- how much ---

    async def check_rate(self, route: DeploymentRoute) -> None:
        """Count one request against the deployment's per-minute limit; RateLimitedError (429)
        past it. Counting is local and immediate; every PROXY_RATE_SYNC_S the process adds its
        counts to the shared ones in Redis (when REDIS_URL is set) and learns the other
        processes' — so no Redis round trip on the request path, and the limit holds across
        web processes to within one sync interval of traffic. A Redis outage lets requests
        through on the local counts."""
        limit = route.rate_limit_per_minute
        if not limit or not settings.RATE_LIMIT_ENABLED:
            return
        now = time.time()
        window = int(now // 60)
        key = f"prl:{route.id}:{window}"
        count = self._rates.hit(key)
        if count > limit:
            retry_after = max(1, int((window + 1) * 60 - now + 0.999))
            raise RateLimitedError(
                f"Rate limit of {limit} requests per minute reached for "
                f"'{route.model_name}'; retry in {retry_after} s.",
                retry_after=retry_after,
            )


class SharedCounters:
    """Per-window request counters: counted in this process at once, summed across processes
    through Redis in the background (INCRBY of what was counted since the last sync)."""

    def __init__(self) -> None:
        self._unsynced: dict[str, int] = {}
        self._known: dict[str, int] = {}  # the shared count as of the last sync
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._redis: dict[int, Any] = {}

    def hit(self, key: str) -> int:
        """Count one; the count as this process knows it now."""
        self._unsynced[key] = self._unsynced.get(key, 0) + 1
        if settings.REDIS_URL:
            self._ensure_syncing()
        return self._known.get(key, 0) + self._unsynced[key]

    def _ensure_syncing(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._tasks.get(id(loop))
        if task is None or task.done():
            self._tasks[id(loop)] = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.PROXY_RATE_SYNC_S)
            if self._unsynced:
                await self.sync()

    async def sync(self) -> None:
        """Add this process's new counts to Redis and learn the totals."""
        pending, self._unsynced = self._unsynced, {}
        if len(self._known) > 10_000:
            self._known = {}
        if not settings.REDIS_URL:
            for key, n in pending.items():
                self._known[key] = self._known.get(key, 0) + n
            return
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        loop_id = id(asyncio.get_running_loop())
        client = self._redis.get(loop_id)
        if client is None:
            client = self._redis[loop_id] = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
            )
        keys = list(pending)
        try:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.incrby(key, pending[key])
                pipe.expire(key, 61, nx=True)
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.error("proxy rate limiter: Redis unavailable, counting locally: %s", exc)
            self._redis.pop(loop_id, None)
            for key, n in pending.items():
                self._known[key] = self._known.get(key, 0) + n
            return
        for key, total in zip(keys, results[0::2], strict=True):
            self._known[key] = int(total)


router = Router()


# --- usage: buffered, flushed in batches ---------------------------------------------------------


@dataclass
class UsageEntry:
    """One proxied request (or one voice session's share of work) for ModelUsageLog."""

    deployment_id: uuid.UUID
    endpoint: str
    status_code: int
    latency_ms: float
    replica_id: int | None = None
    first_byte_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    streamed: bool = False
    error: str = ""
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    at: datetime = field(default_factory=timezone.now)


def _write_usage(entries: list[UsageEntry]) -> None:
    from apps.catalog.models import ModelUsageLog

    ModelUsageLog.objects.bulk_create(
        [
            ModelUsageLog(
                deployment_id=e.deployment_id,
                replica_id=e.replica_id,
                at=e.at,
                endpoint=e.endpoint[:40],
                status_code=e.status_code,
                latency_ms=e.latency_ms,
                first_byte_ms=e.first_byte_ms,
                prompt_tokens=max(0, e.prompt_tokens),
                completion_tokens=max(0, e.completion_tokens),
                streamed=e.streamed,
                error=e.error[:64],
                audio_in_s=e.audio_in_s,
                audio_out_s=e.audio_out_s,
            )
            for e in entries
        ],
        batch_size=1000,
    )


class UsageBuffer:
    """Usage rows collected in memory and written in one INSERT per PROXY_USAGE_FLUSH_S (or
    sooner, past PROXY_USAGE_FLUSH_ROWS rows). `record` never touches the database. What a
    process holds when it is killed is lost (at most one interval's rows)."""

    def __init__(self) -> None:
        self._entries: list[UsageEntry] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake: dict[int, asyncio.Event] = {}

    def record(self, entry: UsageEntry) -> None:
        metrics.observe_proxy(entry)
        self._entries.append(entry)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # sync caller: `flush_sync` or the next async record writes it
        task = self._tasks.get(id(loop))
        if task is None or task.done():
            self._wake[id(loop)] = asyncio.Event()
            self._tasks[id(loop)] = loop.create_task(self._run(self._wake[id(loop)]))
        if len(self._entries) >= settings.PROXY_USAGE_FLUSH_ROWS:
            self._wake[id(loop)].set()

    def take(self) -> list[UsageEntry]:
        entries, self._entries = self._entries, []
        return entries

    def pending(self) -> int:
        return len(self._entries)

    async def flush(self) -> int:
        """Write what is buffered now; the number of rows written."""
        entries = self.take()
        if entries:
            try:
                await _db(_write_usage)(entries)
            except Exception:
                logger.exception("proxy: could not write %d usage rows", len(entries))
                self._entries[:0] = entries[-50_000:]  # keep them for the next try, bounded
                return 0
        return len(entries)

    def flush_sync(self) -> int:
        entries = self.take()
        if entries:
            _write_usage(entries)
        return len(entries)

    async def _run(self, wake: asyncio.Event) -> None:
        interval = float(settings.PROXY_USAGE_FLUSH_S)
        while True:
            try:
                await asyncio.wait_for(wake.wait(), timeout=interval)
            except TimeoutError:
                pass
            wake.clear()
            if self._entries:
                await self.flush()


usage_buffer = UsageBuffer()
