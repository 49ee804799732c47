"""Fixed-window rate limiting shared by every web process.

Each client (a verified API credential when the request carries one, else its IP address: see
`apps.core.middleware.RateLimitMiddleware`) has one counter per window (`60/m`, `1000/h`, ...).
With Redis the counters for all windows are bumped in one pipelined round trip, so every web
process sees the same counts; without Redis they live in the process's local-memory cache (the
embedded default, one process)."""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.cache import cache as django_cache

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limit:
    count: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> "Limit":
        count, _, unit = text.strip().partition("/")
        if unit not in _PERIODS or not count.isdigit():
            raise ValueError(f"bad rate limit {text!r}: expected e.g. '60/m' or '1000/h'")
        return cls(count=int(count), period=_PERIODS[unit])


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the reported window ends
    retry_after: int  # seconds; 0 when allowed


@cache
def _parse_limits(texts: tuple[str, ...]) -> tuple[Limit, ...]:
    return tuple(Limit.parse(text) for text in texts)


def configured_limits() -> tuple[Limit, ...]:
    return _parse_limits(tuple(settings.RATE_LIMITS))


_local = threading.local()


def _redis():
    """One client (and connection pool) per thread: under ASGI each request's sync code runs
    in a thread of its own, and a pool shared across those threads was seen to hand a
    half-connected socket to a second thread (AttributeError inside redis-py) under load."""
    client = getattr(_local, "client", None)
    if client is None:
        import redis

        client = _local.client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
    return client


def _queue(pipe, keys: list[tuple[str, int]]):
    for key, ttl in keys:
        pipe.incr(key)
        pipe.expire(key, ttl, nx=True)
    return pipe


def _bump(keys: list[tuple[str, int]]) -> list[int] | None:
    """The counts after this request, or None when the shared counter store is unreachable
    (the request is then let through: a limiter outage must not take the API down)."""
    if settings.REDIS_URL:
        import redis

        try:
            results = _queue(_redis().pipeline(transaction=False), keys).execute()
        except (redis.RedisError, OSError, AttributeError) as exc:
            logger.error("rate limiter: Redis unavailable, not limiting: %s", exc)
            _local.client = None
            return None
        return [int(n) for n in results[0::2]]
    return _bump_local(keys)


def _bump_local(keys: list[tuple[str, int]]) -> list[int]:
    counts = []
    for key, ttl in keys:
        django_cache.add(key, 0, ttl)
        try:
            counts.append(django_cache.incr(key))
        except ValueError:  # expired between add and incr
            django_cache.set(key, 1, ttl)
            counts.append(1)
    return counts


def client_bucket(*, identity: str | None, ip: str) -> str:
    """`identity` is who a *verified* credential belongs to (e.g. "apikey:<id>"); a request
    without one is counted against its IP."""
    if identity:
        return "id:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    return "ip:" + ip


def _window_keys(bucket: str, now: float, limits: tuple[Limit, ...]) -> list[tuple[str, int]]:
    return [
        (f"rl:{bucket}:{limit.period}:{int(now // limit.period)}", limit.period + 1)
        for limit in limits
    ]


def parse_limits(texts: list[str] | tuple[str, ...]) -> tuple[Limit, ...]:
    return _parse_limits(tuple(texts))


def rate_limit_hit(
    bucket: str, now: float | None = None, limits: tuple[Limit, ...] | None = None
) -> Verdict:
    """Count one request for `bucket` against every window of `limits` (default: RATE_LIMITS)."""
    now = time.time() if now is None else now
    limits = configured_limits() if limits is None else limits
    counts = _bump(_window_keys(bucket, now, limits))
    if counts is None:
        counts = [0] * len(limits)
    return _verdict(now, limits, counts)


def _verdict(now: float, limits: tuple[Limit, ...], counts: list[int]) -> Verdict:
    verdicts = []
    for limit, count in zip(limits, counts, strict=True):
        reset_at = (int(now // limit.period) + 1) * limit.period
        verdicts.append(
            Verdict(
                allowed=count <= limit.count,
                limit=limit.count,
                remaining=max(0, limit.count - count),
                reset_at=reset_at,
                retry_after=0 if count <= limit.count else max(1, int(reset_at - now + 0.999)),
            )
        )
    blocked = [v for v in verdicts if not v.allowed]
    if blocked:
        return max(blocked, key=lambda v: v.retry_after)
    return min(verdicts, key=lambda v: v.remaining)
