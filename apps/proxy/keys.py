"""Per-key limits (issue 14): each key of a deployment may have a monthly token budget and a
per-minute rate limit of its own, checked besides the deployment's limit.

- Rate: counted like the deployment's (in-process, summed through Redis in the background by a
  `SharedCounters` of its own), 429 `rate_limit_exceeded` past it.
- Budget: prompt + completion tokens of the key's answers in the calendar month (UTC), kept in
  Redis (`ktok:<key>:<YYYYMM>`, INCRBY after each answer; expires after 40 days). A key at or
  over its budget gets 429 with OpenAI's `insufficient_quota`; the deployment's other keys go
  on. Counts are added in the background every PROXY_RATE_SYNC_S and every process re-reads
  the totals of the keys it checks as often, so a budget holds across processes to within one
  interval of traffic (an answer already under way is never cut). Without Redis the counts are
  this process's.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from apps.catalog.load import month_key
from apps.catalog.models import DeploymentKey
from apps.proxy.routing import (
    KeyIdentity,
    LoopSync,
    ProxyError,
    RateLimitedError,
    SharedCounters,
    TtlCache,
    db_call,
)

logger = logging.getLogger(__name__)

MONTH_TTL_S = 40 * 86400


class InsufficientQuotaError(ProxyError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


@dataclass(frozen=True)
class KeyLimits:
    monthly_token_budget: int | None
    rate_limit_per_minute: int | None


def _load_limits(key_id: uuid.UUID) -> KeyLimits:
    row = (
        DeploymentKey.objects.filter(pk=key_id)
        .values("monthly_token_budget", "rate_limit_per_minute")
        .first()
    )
    return KeyLimits(**row) if row else KeyLimits(None, None)


class TokenTotals:
    """Monthly token totals per key: added here at once, in Redis in the background."""

    def __init__(self) -> None:
        self._unsynced: dict[str, int] = {}
        self._known: dict[str, int] = {}
        self._watched: dict[str, float] = {}
        self._sync = LoopSync("proxy key budgets", lambda: settings.PROXY_RATE_SYNC_S, self.sync)

    def add(self, name: str, tokens: int) -> None:
        if tokens <= 0:
            return
        self._unsynced[name] = self._unsynced.get(name, 0) + tokens
        self._sync.ensure_running()

    async def used(self, name: str) -> int:
        """The month's total as this process knows it (one Redis read the first time)."""
        self._watched[name] = time.monotonic()
        self._sync.ensure_running()
        if name not in self._known and settings.REDIS_URL:
            try:
                self._known[name] = int(await self._sync.client().get(name) or 0)
            except (RedisError, OSError) as exc:
                logger.error("proxy key budgets: Redis unavailable: %s", exc)
        return self._known.get(name, 0) + self._unsynced.get(name, 0)

    async def sync(self) -> None:
        """Add this process's new counts to Redis and re-read the watched totals."""
        pending, self._unsynced = self._unsynced, {}
        now = time.monotonic()
        self._watched = {k: t for k, t in self._watched.items() if now - t < 60}
        if not settings.REDIS_URL:
            for name, n in pending.items():
                self._known[name] = self._known.get(name, 0) + n
            return
        names = sorted(set(pending) | set(self._watched))
        if not names:
            return
        pipe = self._sync.client().pipeline(transaction=False)
        for name in names:
            if name in pending:
                pipe.incrby(name, pending[name])
                pipe.expire(name, MONTH_TTL_S)
            else:
                pipe.get(name)
        try:
            results = iter(await pipe.execute())
        except BaseException:
            for name, n in pending.items():  # not lost: added again next time
                self._unsynced[name] = self._unsynced.get(name, 0) + n
            raise
        for name in names:
            total = next(results)
            if name in pending:
                next(results)  # the EXPIRE
            self._known[name] = int(total or 0)


class KeyGuard:
    """Checks a key's own limits before a request and meters its tokens after."""

    def __init__(self) -> None:
        self._limits = TtlCache()
        self.rates = SharedCounters()
        self.tokens = TokenTotals()

    async def limits(self, key_id: uuid.UUID) -> KeyLimits:
        return await self._limits.get(
            ("key", key_id),
            float(settings.PROXY_ROUTE_CACHE_S),
            lambda: db_call(_load_limits)(key_id),
        )

    async def check(self, identity: KeyIdentity) -> None:
        limits = await self.limits(identity.key_id)
        if limits.monthly_token_budget is not None:
            used = await self.tokens.used(month_key(identity.key_id))
            if used >= limits.monthly_token_budget:
                raise InsufficientQuotaError(
                    f"This key has used its monthly budget of {limits.monthly_token_budget} "
                    f"tokens ({used} used this month). Raise the key's budget or use another "
                    "key."
                )
        limit = limits.rate_limit_per_minute
        if limit and settings.RATE_LIMIT_ENABLED:
            now = time.time()
            window = int(now // 60)
            if self.rates.hit(f"krl:{identity.key_id}:{window}") > limit:
                retry_after = max(1, int((window + 1) * 60 - now + 0.999))
                raise RateLimitedError(
                    f"Rate limit of {limit} requests per minute reached for this key; retry in "
                    f"{retry_after} s.",
                    retry_after=retry_after,
                )


guard = KeyGuard()
