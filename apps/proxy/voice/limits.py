"""Per-key concurrent voice sessions, shared by every web process.

With Redis each key has a sorted set of its open sessions scored by lease expiry; a session
renews its lease while it lives (`SessionSlots.renew`), so a process that dies without
releasing frees its slots within VOICE_SESSION_LEASE_S. Without Redis (the embedded default,
one process) the counts live in this process. A Redis outage lets sessions in (as the rate
limiter does): a limiter failure must not take voice down."""

import asyncio
import logging
import time
import uuid
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


class SessionSlots:
    def __init__(self) -> None:
        self._local: dict[str, set[str]] = {}
        self._redis: dict[int, Any] = {}

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        loop_id = id(asyncio.get_running_loop())
        client = self._redis.get(loop_id)
        if client is None:
            client = self._redis[loop_id] = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
            )
        return client

    @staticmethod
    def _key(key_id: uuid.UUID) -> str:
        return f"voice:sessions:{key_id}"

    async def acquire(self, *, key_id: uuid.UUID, session_id: str, limit: int) -> bool:
        """Take a slot for `session_id`; False when the key already has `limit` sessions."""
        if not settings.REDIS_URL:
            held = self._local.setdefault(str(key_id), set())
            if len(held) >= limit:
                return False
            held.add(session_id)
            return True
        from redis.exceptions import RedisError

        key = self._key(key_id)
        lease = float(settings.VOICE_SESSION_LEASE_S)
        now = time.time()
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {session_id: now + lease})
            pipe.zcard(key)
            pipe.expire(key, int(lease) + 1)
            _, _, count, _ = await pipe.execute()
            if int(count) > limit:
                await self._client().zrem(key, session_id)
                return False
            return True
        except (RedisError, OSError) as exc:
            logger.error("voice session limiter: Redis unavailable, not limiting: %s", exc)
            self._redis.pop(id(asyncio.get_running_loop()), None)
            return True

    async def renew(self, *, key_id: uuid.UUID, session_id: str) -> None:
        if not settings.REDIS_URL:
            return
        from redis.exceptions import RedisError

        lease = float(settings.VOICE_SESSION_LEASE_S)
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.zadd(self._key(key_id), {session_id: time.time() + lease}, xx=True)
            pipe.expire(self._key(key_id), int(lease) + 1)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("voice session limiter: could not renew a lease: %s", exc)

    async def release(self, *, key_id: uuid.UUID, session_id: str) -> None:
        if not settings.REDIS_URL:
            self._local.get(str(key_id), set()).discard(session_id)
            return
        from redis.exceptions import RedisError

        try:
            await self._client().zrem(self._key(key_id), session_id)
        except (RedisError, OSError) as exc:
            logger.warning("voice session limiter: could not release a slot: %s", exc)


session_slots = SessionSlots()
