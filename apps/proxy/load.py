"""This web process's share of the outstanding requests (issue 14), published for the
autoscaler (layout in `apps.catalog.load`).

What is published: the router's per-replica in-flight counts (`router.outstanding`, kept by
`router.lease`) and the requests this process holds per deployment waiting for a replica.
Every PROXY_LOAD_SYNC_S the whole hash is rewritten in one MULTI (so a reader never sees half
an update) with a LOAD_TTL_S expiry; a process that dies stops counting when it expires. The
held queue's admission (`max_queue` across processes) is one Redis counter per deployment.
No Redis round trip on a served request's path; one INCR and one DECR per held request."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from django.conf import settings

from apps.catalog.load import (
    LOAD_TTL_S,
    PROCS_KEY,
    fields_of,
    local_publish,
    local_queue_add,
    proc_key,
    queue_key,
)
from apps.proxy.routing import LoopSync, router

logger = logging.getLogger(__name__)

REFRESH_S = 1.0  # rewrite an unchanged hash this often, to keep it from expiring


class LoadPublisher:
    """Publishes this process's outstanding counts; admits held requests to a deployment's
    queue. Use the module's `publisher`."""

    def __init__(self) -> None:
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: dict[str, int] = {}
        self._sync = LoopSync(
            "proxy load: could not publish", lambda: settings.PROXY_LOAD_SYNC_S, self.publish
        )
        self._last: dict[str, int] | None = None
        self._last_at = 0.0

    def ensure_running(self) -> None:
        """Start publishing from the running event loop (once per loop)."""
        self._sync.ensure_running()

    def _client(self) -> Any:
        return self._sync.client()

    async def publish(self, *, force: bool = False) -> None:
        """Write this process's counts now (skipped when unchanged and recently written)."""
        fields = fields_of(router.outstanding, self.held)
        now = time.monotonic()
        unchanged = fields == self._last and now - self._last_at < REFRESH_S
        if unchanged and not force:
            return
        if not fields and not self._last and not force:
            return  # nothing to say, nothing said before
        if not settings.REDIS_URL:
            local_publish(self.process_id, fields)
        else:
            key = proc_key(self.process_id)
            pipe = self._client().pipeline(transaction=True)
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, LOAD_TTL_S)
            pipe.zadd(PROCS_KEY, {self.process_id: time.time()})
            await pipe.execute()
        self._last = fields
        self._last_at = now

    # --- the held queue ---

    async def queue_enter(self, deployment_id: uuid.UUID, *, max_queue: int, ttl_s: int) -> bool:
        """Take a place in the deployment's queue of held requests; False when `max_queue`
        are already held (over every process). The counter expires `ttl_s` after its last
        entry, so places a dead process held are given back."""
        if not settings.REDIS_URL:
            if local_queue_add(deployment_id, 1) > max_queue:
                local_queue_add(deployment_id, -1)
                return False
            return True
        key = queue_key(deployment_id)
        pipe = self._client().pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        length, _ = await pipe.execute()
        if int(length) > max_queue:
            await self._client().decr(key)
            return False
        return True

    async def queue_leave(self, deployment_id: uuid.UUID) -> None:
        if not settings.REDIS_URL:
            local_queue_add(deployment_id, -1)
            return
        key = queue_key(deployment_id)
        if int(await self._client().decr(key)) < 0:
            await self._client().set(key, 0, keepttl=True)

    def hold(self, deployment_id: uuid.UUID, delta: int) -> None:
        key = str(deployment_id)
        value = self.held.get(key, 0) + delta
        if value > 0:
            self.held[key] = value
        else:
            self.held.pop(key, None)


publisher = LoadPublisher()
